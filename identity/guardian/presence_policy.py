"""Guardian presence, the pure part (issue 4): the hysteresis state machine, which faces need a
fresh encoding, and the age rules. No I/O, no clock of its own: time comes in with every call, so
tests drive it sample by sample.

Why hysteresis: one frame in which the detector misses a face (motion blur, a turned head) must
not flash "guardian absent" on two pages and in the audit log. So the guardian becomes `absent`
only after being unseen for `absent_after_s` (default 5 s), and `present` again only after
`present_after` consecutive matching samples (default 2). Before the first sighting the state is
`unknown`: the accept gate waits for `present`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from core.policy.dates import years_after

State = Literal["unknown", "present", "absent"]
Box = tuple[int, int, int, int]  # top, right, bottom, left (face_recognition's order)


@dataclass(frozen=True)
class Observation:
    """One sample of the patient side's video: was an enrolled guardian seen, how many faces."""

    at: float  # monotonic seconds
    matched: bool
    faces: int
    distance: float | None = None  # best distance to an enrolled guardian, if a face was encoded
    video: bool = True  # False when no frame came (counts as unseen)


@dataclass(frozen=True)
class Change:
    """What the machine reports: a new state, or `limit` once per absence that lasts too long."""

    kind: Literal["present", "absent", "limit"]
    at: float
    previous: State
    unseen_s: float
    faces: int
    distance: float | None
    streak: int


@dataclass
class PresenceMachine:
    absent_after_s: float = 5.0
    present_after: int = 2
    limit_s: float = 60.0
    # Samples come once an interval but their frames' arrival times jitter by a frame or two: the
    # fifth sample after the last sighting may be 4.97 s later. Without this slack it would take
    # a sixth sample (a whole interval more) to call the absence.
    slack_s: float = 0.2
    state: State = "unknown"
    last_seen: float | None = None
    streak: int = 0
    limit_reported: bool = False
    _last: Observation | None = field(default=None, repr=False)

    def observe(self, obs: Observation) -> list[Change]:
        """Feed one sample (in time order); returns the changes it caused (usually none)."""
        self._last = obs
        changes: list[Change] = []
        if obs.matched:
            self.streak += 1
            self.last_seen = obs.at
            if self.state == "present":
                return changes
            if self.streak >= self.present_after:
                changes.append(self._change("present", obs.at, 0.0))
                self.state, self.limit_reported = "present", False
            return changes
        self.streak = 0
        return self.tick(obs.at)

    def tick(self, now: float) -> list[Change]:
        """Time passing without a match: absence and the absence limit are decided here too, so a
        camera that stops sending frames still ends as `absent`."""
        if self.state == "unknown" or self.last_seen is None:
            return []
        unseen = now - self.last_seen
        changes: list[Change] = []
        if self.state == "present" and unseen >= self.absent_after_s - self.slack_s:
            changes.append(self._change("absent", now, unseen))
            self.state = "absent"
        if (self.state == "absent" and not self.limit_reported
                and unseen >= self.limit_s - self.slack_s):
            changes.append(self._change("limit", now, unseen))
            self.limit_reported = True
        return changes

    def unseen_s(self, now: float) -> float | None:
        return None if self.last_seen is None else now - self.last_seen

    def _change(self, kind: Literal["present", "absent", "limit"], at: float,
                unseen: float) -> Change:
        last = self._last
        return Change(kind, at, self.state, round(unseen, 3), last.faces if last else 0,
                      last.distance if last else None, self.streak)


# -- which faces need an encoding ---------------------------------------------------------------

@dataclass(frozen=True)
class Track:
    """A face seen in an earlier sample and what its encoding said, so it is not encoded again."""

    box: Box
    distance: float | None
    encoded_at: float


def iou(a: Box, b: Box) -> float:
    """Overlap of two boxes (0..1): the same face one sample later overlaps its old box a lot."""
    top, right = max(a[0], b[0]), min(a[1], b[1])
    bottom, left = min(a[2], b[2]), max(a[3], b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    area = (a[1] - a[3]) * (a[2] - a[0]) + (b[1] - b[3]) * (b[2] - b[0]) - inter
    return inter / area if area > 0 else 0.0


def reuse(boxes: list[Box], tracks: list[Track], now: float, refresh_s: float,
          min_iou: float = 0.4) -> list[Track | None]:
    """For each face box, the earlier track it continues (encoding still fresh), or None.

    An encoding costs ~156 ms of a worker against ~59 ms for the whole detection, so a face that
    stays where it was is not encoded again until `refresh_s` has passed; a face that appears or
    moves is. Each track is used at most once (two faces never share one identity).
    """
    free = [t for t in tracks if now - t.encoded_at < refresh_s]
    out: list[Track | None] = []
    for box in boxes:
        best = max(free, key=lambda t: iou(box, t.box), default=None)
        if best is not None and iou(box, best.box) >= min_iou:
            free.remove(best)
            out.append(best)
        else:
            out.append(None)
    return out


# -- ages ----------------------------------------------------------------------------------------

def is_under(birth: date, years: int, on: date) -> bool:
    """True while `years` full years since `birth` are not complete on `on`.

    The birthday itself counts as complete (a child born 2008-03-01 is 18 on 2026-03-01). A
    29 February birthday completes on 28 February of a common year (Civil Code §202, as
    core.policy.dates.years_after reckons it).
    """
    return on < years_after(birth, years)
