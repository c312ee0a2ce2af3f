"""The identity checks' settings and their rules; core/config/ reads them from the
environment with everything else (TC_IDENTITY_REQUIRED, TC_FACE_*).

The face distance threshold, TC_FACE_THRESHOLD = 0.61, is read off the calibration curve
(`python -m bench.calibration`, bench/baselines/calibration-2026-12-02.json, bench/calibration.png):
38 photos of 11 adults (../shared/faces/calibration and the older adults), every ordered pair of
an enrolled upload (worker.enroll) and a live clip of another photo (640x480, VP8 at 1 Mbit/s,
decoded as the node does, worker.analyse), face_recognition 1.3 with dlib 20 and HOG detection.
Same person, 142 pairs: up to 0.594 on one frame, 0.598 fused (identity.doctor.fusion, median of the
best 3 of 8 frames, one of them blurred). Different people, 1,264 pairs: 0.622 at the closest
(id04 enrolled, id03_img59 live), 0.621 on any one frame. No impostor is accepted below 0.621 and
no same-person pair refused from 0.598: 0.61 is the middle of that gap, 0.012 from either side.
The earlier 0.5 (from a handful of stills) refused 15 % of same-person pairs live (21 of 142).
One frame alone does not separate the set (the same person reaches 0.617 on a sharp frame and
0.669 on a blurred one); the fused decision does. The gap is small (dlib's model barely separates
some of these people), so the check refuses a threshold at or past the closest impostor measured
(MAX_THRESHOLD). Guardian presence uses the same threshold; children filmed against the enrolled
adults stay at 0.678 or more. Rerun the bench after changing the detector or the model, and move
both numbers with it. tests/test_face_calibration.py checks both sides on the calibration set.

Liveness (identity/doctor/liveness.py): `challenge_steps` actions (2 or 3, drawn at random
each attempt) announced one at a time, each with `challenge_time_s` (8 s) to do it. Decisions
fuse several frames (identity/doctor/fusion.py): `match_frames` (5) frames with one usable face
before the actions, the frames where each action was seen plus one after the last,
`recheck_frames` (3) per re-check.
A frame is only guidance, never evidence against the doctor, when its face is smaller than
`min_face_px` (80: measured on obama.jpg scaled down in a 640x480 frame, the distance to the
enrolled photo rises from 0.05 at 178 px to 0.15 at 72 px, the smallest HOG finds on the 320-wide
copy) or darker than `dark_luma` (30, mean Rec. 601 luma of the face box, or of the frame when no
face is found: darkening the same frame, the distance rises from 0.05 at 144 to 0.22 at 36, 0.25
at 17 and 0.33 at 11, and no face is found at 4.5).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import pairwise

from .photos import PhotoLimits

CHALLENGES = ("blink", "turn_left", "turn_right")
# The closest different-person distance on the calibration set (any single live frame, 0.621):
# a threshold at or past it accepts a measured impostor.
MAX_THRESHOLD = 0.62
# Finding the faces in a frame (identity/faces/worker.py): BlazeFace
# (identity/faces/blazeface.py), or dlib's HOG on a 320-wide copy. bench/detector.py: BlazeFace
# finds faces from ~30 px (HOG from ~64 px) at ~1/7 of HOG's CPU, and dlib's encodings from its
# boxes are as far apart as from HOG's.
DETECTORS = ("blazeface", "hog")
DEFAULT_DETECTOR = "blazeface"
ACTIONS = ("alert", "pause", "end")


@dataclass(frozen=True)
class IdentityConfig:
    """Every knob of the identity checks; `replace(cfg, ...)` for a test or a bench."""

    # Off only for development and for tests that are not about identity: production verifies.
    required: bool = True
    threshold: float = 0.61
    # "random" draws a sequence from `challenges`; or pin one, comma-separated ("turn_left,blink").
    challenge: str = "random"
    challenges: tuple[str, ...] = CHALLENGES
    # How many actions a random sequence has: drawn between these two (inclusive) each attempt.
    challenge_steps: tuple[int, int] = (2, 3)
    # Seconds for EACH action, from its announcement.
    challenge_time_s: float = 8.0
    # Frames with exactly one usable face whose fused distance decides the match before the
    # actions (fusion.fused_verdict stops at 2 that match, or 4 that do not).
    match_frames: int = 5
    # Frames fused per re-check during the call (2 when the first two agree).
    recheck_frames: int = 3
    # Darker than this (mean luma 0-255 of the face, or of the frame without a face): guidance.
    dark_luma: float = 30.0
    # Give up on an attempt when no usable frame (one matching face) came within this long.
    attempt_time_s: float = 20.0
    max_attempts: int = 3
    retry_pause_s: float = 2.0
    # Interval between samples during verification (the pool's speed bounds it too).
    sample_interval_s: float = 0.15
    # Continuous assurance during the call.
    recheck_s: float = 30.0
    grace_s: float = 10.0
    grace_recheck_s: float = 3.0
    mismatch_action: str = "alert"
    # Enrollment.
    max_photo_bytes: int = 5 * 1024 * 1024
    min_face_px: int = 80
    # Pixel limits of every reference photo, doctors' and guardians' (image_check.py).
    photo: PhotoLimits = field(default_factory=PhotoLimits)
    workers: int = 1
    detector: str = DEFAULT_DETECTOR

    def checked(self) -> IdentityConfig:
        if not 0.0 < self.threshold < MAX_THRESHOLD:
            raise ValueError(f"TC_FACE_THRESHOLD={self.threshold}: must be in (0, "
                             f"{MAX_THRESHOLD}), below the closest impostor measured")
        if self.challenge != "random":
            steps = self.pinned()
            if not steps or any(s not in CHALLENGES for s in steps) or any(
                    a == b for a, b in pairwise(steps)):
                raise ValueError(f"TC_FACE_CHALLENGE={self.challenge!r}: random or a "
                                 f"comma-separated sequence of {CHALLENGES}, none twice in a row")
        low, high = self.challenge_steps
        if not 1 <= low <= high <= 5:
            raise ValueError(f"TC_FACE_CHALLENGE_STEPS={low}-{high}: 1 <= low <= high <= 5")
        if self.match_frames < 1 or self.recheck_frames < 1:
            raise ValueError("match_frames and recheck_frames must be at least 1")
        if self.mismatch_action not in ACTIONS:
            raise ValueError(f"TC_FACE_MISMATCH_ACTION={self.mismatch_action!r}: one of {ACTIONS}")
        if self.detector not in DETECTORS:
            raise ValueError(f"TC_FACE_DETECTOR={self.detector!r}: one of {DETECTORS}")
        self.photo.checked()
        return self

    def pinned(self) -> tuple[str, ...]:
        """The pinned sequence of TC_FACE_CHALLENGE (empty for "random")."""
        if self.challenge == "random":
            return ()
        return tuple(s.strip() for s in self.challenge.split(","))

    def with_(self, **changes: object) -> IdentityConfig:
        return replace(self, **changes).checked()  # type: ignore[arg-type]
