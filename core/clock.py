"""The node's idea of "now" for date rules (the pilot window, bookings in the past).

The wall clock in production. A test of a date rule fixes it, so that what the test proves does
not expire with the calendar (the pilot ends on 2026-12-31).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass
class Clock:
    fixed: datetime | None = None

    def now(self) -> datetime:
        return self.fixed if self.fixed is not None else datetime.now(UTC)
