"""Sequence liveness: a random series of actions, each judged only on frames that arrived after it
was announced, so a clip recorded earlier does not show the right actions at the right moments.

The verifier draws 2–3 actions (`challenge_sequence`: blink, turn_left, turn_right, never the same
twice in a row) and announces them one at a time, each with its own window. A `StepJudge` is fed
the poses of one step's window, in order, each with the time its frame ARRIVED at the node:
- frames that arrived before the announcement are ignored: an action done too early does not
  count (a clip that turned a moment before it was asked shows no turn afterwards);
- the asked action, judged as in geometry.py (a blink open → closed → open; a turn through the
  poses in between, at least TURN_DELTA of yaw travel), passes the step;
- a *rival* action completed first fails the attempt as `challenge_wrong`, the evidence of a
  replay doing its actions in its own order. Rivals are chosen so a live doctor does not trip
  them: a blink is never a rival (people blink by themselves every few seconds); a turn is a
  rival only when it ends with the head clearly on that side (|yaw| ≥ RIVAL_OUT), so turning back
  to the camera after the previous step's turn (a movement "to the other side" that ends facing
  the camera) is not one. During a turn step the rival is the opposite turn; during a blink step
  either turn.
- nothing decisive within the window: the step is not done (guidance; the attempt is retried
  with a new sequence).
The asked action is judged leniently (geometry's rules), the evidence against strictly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..faces.geometry import Pose, challenge_done, turned

RIVAL_OUT = 0.15  # |yaw ratio| at the end of a rival turn: the head clearly turned to that side

DONE = "done"
WRONG = "wrong"

_RIVALS = {"turn_left": ("turn_right",), "turn_right": ("turn_left",),
           "blink": ("turn_left", "turn_right")}


def challenge_sequence(actions: Sequence[str], steps: int,
                       rng: random.Random | None = None) -> tuple[str, ...]:
    """`steps` actions drawn from `actions`, no action twice in a row (a system random source by
    default: the order must not be predictable from earlier consultations)."""
    rng = rng or random.SystemRandom()
    out: list[str] = []
    for _ in range(steps):
        choices = [a for a in actions if not out or a != out[-1]] or list(actions)
        out.append(rng.choice(choices))
    return tuple(out)


def rival_turn(direction: str, yaws: Sequence[float]) -> bool:
    """A completed turn to `direction` ("left"/"right") that ends with the head on that side."""
    if not yaws:
        return False
    sign = 1.0 if direction == "left" else -1.0
    return sign * yaws[-1] >= RIVAL_OUT and turned(yaws, direction)


@dataclass
class StepJudge:
    """One step of the sequence: fed (pose, arrival time) frame by frame; `verdict` is None until
    the asked action (DONE) or a rival action (WRONG) completes."""

    asked: str
    announced_at: float
    poses: list[Pose] = field(default_factory=list)
    early: int = 0  # frames that arrived before the announcement (not judged)
    verdict: str | None = None
    rival: str | None = None

    def __post_init__(self) -> None:
        if self.asked not in _RIVALS:
            raise ValueError(f"unknown challenge {self.asked!r}")

    def add(self, pose: Pose, arrived: float) -> str | None:
        if self.verdict is not None:
            return self.verdict
        if arrived <= self.announced_at:
            self.early += 1
            return None
        self.poses.append(pose)
        if challenge_done(self.asked, self.poses):  # the asked action first: it wins a tie
            self.verdict = DONE
            return DONE
        yaws = [p.yaw for p in self.poses]
        for rival in _RIVALS[self.asked]:
            if rival_turn(rival.removeprefix("turn_"), yaws):
                self.verdict, self.rival = WRONG, rival
                return WRONG
        return None


def judge(asked: str, announced_at: float,
          frames: Sequence[tuple[Pose, float]]) -> StepJudge:
    """A whole step at once (what the verifier does frame by frame): the judge after `frames`."""
    step = StepJudge(asked, announced_at)
    for pose, arrived in frames:
        if step.add(pose, arrived) is not None:
            break
    return step
