"""Liveness from 68-point landmarks: pure math, unit-tested on landmark sequences.

Blink: the eye aspect ratio (Soukupová & Čech 2016), EAR = (|p2-p6| + |p3-p5|) / (2 |p1-p4|),
about 0.25–0.35 with open eyes and under ~0.2 while closed; a blink is open → closed → open.
Head turn: the horizontal offset of the nose tip from the midpoint of the eyes, divided by the
distance between the eyes ("yaw ratio"). It is ~0 facing the camera and changes sign with the
direction; it does not depend on distance to the camera or on the picture's scale, so a pan/zoom
of a still photo leaves it unchanged (measured: still photos vary by < 0.02 under the test clips'
pan/zoom, and a photo tilted strongly away from the camera by ~0.03), so a still photo cannot
pass. A turn must also go through the poses in between, so swapping one photo for another (or
for its mirror image) cannot pass either. A replayed video of the doctor doing one action could:
the random sequence of actions, each judged only after its announcement (liveness.py), is what
makes a recorded clip fail.
In camera image coordinates, a person turning to THEIR left moves the nose towards the image's
right: the ratio increases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]

EAR_CLOSED = 0.20
EAR_OPEN = 0.24
TURN_DELTA = 0.20
MAX_STEP_SHARE = 0.75  # of a turn's travel, between two analysed frames


def _dist(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def eye_aspect_ratio(eye: Sequence[Point]) -> float:
    """EAR of one eye given its six landmarks in dlib order (p1..p6)."""
    p1, p2, p3, p4, p5, p6 = eye
    width = _dist(p1, p4)
    if width == 0:
        return 0.0
    return (_dist(p2, p6) + _dist(p3, p5)) / (2.0 * width)


def _mean(points: Sequence[Point]) -> Point:
    return (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))


def yaw_ratio(left_eye: Sequence[Point], right_eye: Sequence[Point],
              nose_tip: Sequence[Point]) -> float:
    """(nose tip x − eye midpoint x) / inter-eye distance, in image coordinates."""
    le, re, nose = _mean(left_eye), _mean(right_eye), _mean(nose_tip)
    span = _dist(le, re)
    if span == 0:
        return 0.0
    return (nose[0] - (le[0] + re[0]) / 2) / span


@dataclass(frozen=True)
class Pose:
    """What one frame's landmarks say: both eyes' mean EAR and the yaw ratio."""

    ear: float
    yaw: float


def pose_from_landmarks(landmarks: dict[str, list[Point]]) -> Pose:
    ear = (eye_aspect_ratio(landmarks["left_eye"]) + eye_aspect_ratio(landmarks["right_eye"])) / 2
    return Pose(ear, yaw_ratio(landmarks["left_eye"], landmarks["right_eye"],
                               landmarks["nose_tip"]))


def blinked(ears: Sequence[float], closed: float = EAR_CLOSED, open_: float = EAR_OPEN) -> bool:
    """True when the sequence goes open (≥ open_) → closed (≤ closed) → open again."""
    state = "start"
    for ear in ears:
        if state == "start" and ear >= open_:
            state = "open"
        elif state == "open" and ear <= closed:
            state = "closed"
        elif state == "closed" and ear >= open_:
            return True
    return False


def turned(yaws: Sequence[float], direction: str, delta: float = TURN_DELTA,
           max_step: float = MAX_STEP_SHARE) -> bool:
    """True when the yaw ratio moved by ≥ delta in `direction` from its lowest point, in steps
    none of which covers more than `max_step` of that travel.

    A head turns through the poses in between; a photo swapped for another (or for its mirror
    image) jumps from one pose to the other in a single step and does not count. "left"/"right"
    are the person's own left/right (yaw increases for a turn to their left).
    """
    sign = 1.0 if direction == "left" else -1.0
    lowest, biggest_step, previous = math.inf, 0.0, math.inf
    for yaw in yaws:
        value = sign * yaw
        if value < lowest:
            lowest, biggest_step = value, 0.0
        else:
            biggest_step = max(biggest_step, value - previous)
            travel = value - lowest
            if travel >= delta and biggest_step <= max_step * travel:
                return True
        previous = value
    return False


def challenge_done(challenge: str, poses: Sequence[Pose]) -> bool:
    if challenge == "blink":
        return blinked([p.ear for p in poses])
    if challenge in ("turn_left", "turn_right"):
        return turned([p.yaw for p in poses], challenge.removeprefix("turn_"))
    raise ValueError(f"unknown challenge {challenge!r}")
