"""The identity checks' settings and their rules; server/config.py reads them from the
environment with everything else (TC_IDENTITY_REQUIRED, TC_FACE_*).

The face distance threshold, TC_FACE_THRESHOLD = 0.61, is read off the calibration curve
(`python -m bench.calibration`, bench/baselines/calibration-2026-12-02.json, bench/calibration.png):
38 photos of 11 adults (../shared/faces/calibration and the older adults), every ordered pair of
an enrolled upload (worker.enroll) and a live clip of another photo (640x480, VP8 at 1 Mbit/s,
decoded as the node does, worker.analyse), face_recognition 1.3 with dlib 20 and HOG detection.
Same person, 142 pairs: up to 0.594 on one frame, 0.598 fused (identity.fusion, median of the
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
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .image_check import PhotoLimits

CHALLENGES = ("blink", "turn_left", "turn_right")
# The closest different-person distance on the calibration set (any single live frame, 0.621):
# a threshold at or past it accepts a measured impostor.
MAX_THRESHOLD = 0.62
ACTIONS = ("alert", "pause", "end")


@dataclass(frozen=True)
class IdentityConfig:
    """Every knob of the identity checks; `replace(cfg, ...)` for a test or a bench."""

    # Off only for development and for tests that are not about identity: production verifies.
    required: bool = True
    threshold: float = 0.61
    # "random" picks one of `challenges`; or name one challenge to always use it.
    challenge: str = "random"
    challenges: tuple[str, ...] = CHALLENGES
    challenge_time_s: float = 15.0
    # Frames with exactly one matching face needed before the challenge is issued.
    match_frames: int = 2
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

    def checked(self) -> IdentityConfig:
        if not 0.0 < self.threshold < MAX_THRESHOLD:
            raise ValueError(f"TC_FACE_THRESHOLD={self.threshold}: must be in (0, "
                             f"{MAX_THRESHOLD}), below the closest impostor measured")
        if self.challenge != "random" and self.challenge not in CHALLENGES:
            raise ValueError(f"TC_FACE_CHALLENGE={self.challenge!r}: random or one of {CHALLENGES}")
        if self.mismatch_action not in ACTIONS:
            raise ValueError(f"TC_FACE_MISMATCH_ACTION={self.mismatch_action!r}: one of {ACTIONS}")
        self.photo.checked()
        return self

    def with_(self, **changes: object) -> IdentityConfig:
        return replace(self, **changes).checked()  # type: ignore[arg-type]
