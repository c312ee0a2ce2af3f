"""Bounded field types for every HTTP body and query: the limits live here, once.

Hostile input is refused by type, before a handler sees it: strings have lengths and no lone
surrogates or control characters (SQLite binds and the event hash encode to UTF-8), dates sit in
a range a hospital can mean, and numbers have bounds.
"""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

# The range of instants and days the service accepts: wide for history, never year 1 or 9999
# (arithmetic at the edges of `date` overflows).
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2199, 12, 31)


def _clean(value: str) -> str:
    """Refuse what no person types: lone surrogates and control characters (bar tab/newline)."""
    for ch in value:
        if unicodedata.category(ch) in ("Cs", "Cc") and ch not in "\t\n\r":
            raise ValueError(f"contains a character that is not text (U+{ord(ch):04X})")
    return value


def text(max_length: int, min_length: int = 1) -> object:
    """A stripped string of `min_length`..`max_length` characters of real text."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=min_length,
                                            max_length=max_length), AfterValidator(_clean)]


def _in_range(value: date) -> date:
    day = value.date() if isinstance(value, datetime) else value
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY} and {LAST_DAY}")
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=40,
                                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
Name = text(100)
Day = Annotated[date, AfterValidator(_in_range)]
Instant = Annotated[AwareDatetime, AfterValidator(_in_range)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]


def _masked(value: str) -> str:
    if "*" not in value or sum(ch != "*" for ch in value) > 7:
        raise ValueError("store only a masked national ID (e.g. 110***********1234, at most 7 "
                         "characters shown), never the full number")
    return value


# Least data: the service keeps a national ID only masked, for a person to tell two records apart.
MaskedNationalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8,
                                                    max_length=32, pattern=r"^[0-9Xx*]+$"),
                             AfterValidator(_masked)]


def _month_in_range(value: str) -> str:
    if not FIRST_DAY.year <= int(value[:4]) <= LAST_DAY.year:
        raise ValueError(f"must be between {FIRST_DAY:%Y-%m} and {LAST_DAY:%Y-%m}")
    return value


# A calendar month, YYYY-MM (the periodic report).
Month = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$"),
                  AfterValidator(_month_in_range)]
