"""The identity checks' settings and their rules; server/config.py reads them from the
environment with everything else (TC_IDENTITY_REQUIRED, TC_FACE_*).

The face distance threshold, TC_FACE_THRESHOLD = 0.5, was measured on ../shared/faces with
face_recognition 1.3 (HOG, one jitter): same-adult pairs of stills 0.06–0.40 (biden/biden2 0.40,
obama/obama2 0.35), different adults ≥ 0.657 (woman1 vs obama2). Live VP8 frames against the
enrolled still were 0.10–0.25 (DESIGN.md). 0.5 sits 0.10 above the worst same-person pair and 0.15
below the closest different pair, and is stricter than face_recognition's 0.6, which would leave
only 0.057 of margin against an impostor. tests/test_identity_faces.py checks both sides on the
real photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .image_check import PhotoLimits

CHALLENGES = ("blink", "turn_left", "turn_right")
# Finding the faces in a frame (identity/worker.py): BlazeFace (identity/blazeface.py), or dlib's
# HOG on a 320-wide copy. bench/detector.py: BlazeFace finds faces from ~30 px (HOG from ~64 px)
# at ~1/7 of HOG's CPU, and dlib's encodings from its boxes are as far apart as from HOG's.
DETECTORS = ("blazeface", "hog")
DEFAULT_DETECTOR = "blazeface"
ACTIONS = ("alert", "pause", "end")


@dataclass(frozen=True)
class IdentityConfig:
    """Every knob of the identity checks; `replace(cfg, ...)` for a test or a bench."""

    # Off only for development and for tests that are not about identity: production verifies.
    required: bool = True
    threshold: float = 0.5
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
    detector: str = DEFAULT_DETECTOR

    def checked(self) -> IdentityConfig:
        if not 0.0 < self.threshold < 0.6:
            raise ValueError(f"TC_FACE_THRESHOLD={self.threshold}: must be in (0, 0.6)")
        if self.challenge != "random" and self.challenge not in CHALLENGES:
            raise ValueError(f"TC_FACE_CHALLENGE={self.challenge!r}: random or one of {CHALLENGES}")
        if self.mismatch_action not in ACTIONS:
            raise ValueError(f"TC_FACE_MISMATCH_ACTION={self.mismatch_action!r}: one of {ACTIONS}")
        if self.detector not in DETECTORS:
            raise ValueError(f"TC_FACE_DETECTOR={self.detector!r}: one of {DETECTORS}")
        self.photo.checked()
        return self

    def with_(self, **changes: object) -> IdentityConfig:
        return replace(self, **changes).checked()  # type: ignore[arg-type]
