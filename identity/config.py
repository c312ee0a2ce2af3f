"""The identity checks' settings and their rules; server/config.py reads them from the
environment with everything else (TC_IDENTITY_REQUIRED, TC_FACE_*).

The face distance threshold, TC_FACE_THRESHOLD = 0.5, was measured on ../shared/faces with
face_recognition 1.3 (HOG, one jitter): same-adult pairs of stills 0.06–0.40 (biden/biden2 0.40,
obama/obama2 0.35), different adults ≥ 0.657 (woman1 vs obama2). Live VP8 frames against the
enrolled still were 0.10–0.25 (DESIGN.md). 0.5 sits 0.10 above the worst same-person pair and 0.15
below the closest different pair, and is stricter than face_recognition's 0.6, which would leave
only 0.057 of margin against an impostor. tests/test_identity_faces.py checks both sides on the
real photos.

Liveness (identity/liveness.py): `challenge_steps` actions (2 or 3, drawn at random each attempt)
announced one at a time, each with `challenge_time_s` (8 s) to do it. Decisions fuse several
frames (identity/fusion.py): `match_frames` (5) frames with one usable face before the actions,
the frames where each action was seen plus one after the last, `recheck_frames` (3) per re-check.
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

from .image_check import PhotoLimits

CHALLENGES = ("blink", "turn_left", "turn_right")
ACTIONS = ("alert", "pause", "end")


@dataclass(frozen=True)
class IdentityConfig:
    """Every knob of the identity checks; `replace(cfg, ...)` for a test or a bench."""

    # Off only for development and for tests that are not about identity: production verifies.
    required: bool = True
    threshold: float = 0.5
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

    def checked(self) -> IdentityConfig:
        if not 0.0 < self.threshold < 0.6:
            raise ValueError(f"TC_FACE_THRESHOLD={self.threshold}: must be in (0, 0.6)")
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
        self.photo.checked()
        return self

    def pinned(self) -> tuple[str, ...]:
        """The pinned sequence of TC_FACE_CHALLENGE (empty for "random")."""
        if self.challenge == "random":
            return ()
        return tuple(s.strip() for s in self.challenge.split(","))

    def with_(self, **changes: object) -> IdentityConfig:
        return replace(self, **changes).checked()  # type: ignore[arg-type]
