"""Guardian presence settings (issue 4) and their rules; core/config/ reads them from the
environment with everything else (TC_GUARDIAN_*, TC_PEDIATRIC_AGE, TC_PRESCRIBE_GUARDIAN_AGE).

Defaults follow the rules and the measured costs: one sample a second (a whole-picture search is
~4 ms of a worker with BlazeFace, ~29 ms with HOG at 320 wide: bench/detector.py), absent after
5 s unseen (a sample interval plus the hysteresis keeps leaving → alert under 6 s), present again
after 2 consecutive matches, an absence over 60 s asks the doctor to decide (or terminates with a
referral when TC_GUARDIAN_ABSENT_ACTION=terminate).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ABSENT_ACTIONS = ("ask_doctor", "terminate")


@dataclass(frozen=True)
class PresenceConfig:
    # Off only for development and for tests that are not about presence (tests/conftest.py).
    enabled: bool = True
    pediatric_age: int = 18
    prescribe_guardian_age: int = 6
    sample_interval_s: float = 1.0
    absent_after_s: float = 5.0
    present_after: int = 2
    absent_limit_s: float = 60.0
    absent_action: str = "ask_doctor"
    # A tracked face's encoding is trusted this long before it is encoded again.
    refresh_s: float = 5.0
    max_photo_bytes: int = 5 * 1024 * 1024
    min_face_px: int = 80

    def checked(self) -> PresenceConfig:
        if self.absent_action not in ABSENT_ACTIONS:
            raise ValueError(f"TC_GUARDIAN_ABSENT_ACTION={self.absent_action!r}: "
                             f"one of {ABSENT_ACTIONS}")
        if not 0.05 <= self.sample_interval_s <= 10:
            raise ValueError("TC_GUARDIAN_SAMPLE_FPS: between 0.1 and 20 samples a second")
        if self.present_after < 1 or self.absent_after_s <= 0:
            raise ValueError("TC_GUARDIAN_PRESENT_N >= 1 and TC_GUARDIAN_ABSENT_S > 0 needed")
        if self.absent_limit_s < self.absent_after_s:
            raise ValueError("TC_GUARDIAN_ABSENT_LIMIT_S must not be shorter than "
                             "TC_GUARDIAN_ABSENT_S")
        return self

    def with_(self, **changes: object) -> PresenceConfig:
        return replace(self, **changes).checked()  # type: ignore[arg-type]
