"""Calendar arithmetic for the policy: which day a consultation is on, and when years are complete.

Rules are about calendar days in Beijing, not UTC instants: a consultation at 00:30 on
1 January 2026 Beijing time is inside the pilot although it is still 2025 in UTC.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def consultation_date(at: datetime, tz: ZoneInfo = SHANGHAI) -> date:
    """The calendar date of an aware instant in the policy's time zone."""
    if at.tzinfo is None:
        raise ValueError("a naive datetime has no calendar date in Beijing: pass an aware one")
    return at.astimezone(tz).date()


def years_after(start: date, years: int) -> date:
    """The day on which `years` full years since `start` are complete.

    The same month and day `years` later; a 29 February start has no such day in a common year,
    and then the month's last day (28 February) counts, as the Civil Code §202 reckons periods
    ("没有对应日的，月末日为期间的最后一日").
    """
    year = start.year + years
    if start.month == 2 and start.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return start.replace(year=year)
