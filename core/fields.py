"""Bounded field types for every HTTP body and query: the limits live here, once.

Hostile input is refused by type, before a handler sees it: strings have lengths and no lone
surrogates or control characters (SQLite binds and the event hash encode to UTF-8), dates sit in
a range a hospital can mean, and numbers have bounds.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints
from pydantic_core import PydanticCustomError

# The range of instants and days the service accepts: wide for history, never year 1 or 9999
# (arithmetic at the edges of `date` overflows).
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2199, 12, 31)


# C0 controls other than tab, LF and CR, DEL, C1 controls, and UTF-16 surrogates (a JSON
# "\ud800" that a lenient parser lets through): none of them is text a person wrote, and a lone
# surrogate cannot even be encoded (SQLite, the audit hash).
_NOT_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def text_only(value: str) -> str:
    if _NOT_TEXT.search(value):
        raise PydanticCustomError("not_text", "must be text (no control characters or lone "
                                  "surrogates)")
    return value


def text(max_length: int, min_length: int = 1, strip: bool = True) -> Any:
    """A string of `min_length`..`max_length` characters of real text (after stripping)."""
    return Annotated[str, StringConstraints(strip_whitespace=strip, min_length=min_length,
                                            max_length=max_length), AfterValidator(text_only)]


# Where an HTML parser starts markup: `<` then a letter (a tag), `/` (an end tag), `!` (a comment
# or doctype) or `?` (a processing instruction). A `<` before a space, a digit or a Chinese
# character ("体重 < 10kg", "<5岁") starts nothing and is plain text.
_MARKUP = re.compile(r"<[A-Za-z/!?]")
MARKUP_NOT_ALLOWED = "markup_not_allowed"
# Field errors that are their own refusal code (not `bad_field`), with the Chinese a page shows.
FIELD_CODES: dict[str, str] = {
    MARKUP_NOT_ALLOWED: "请只填写文字，不要包含网页代码（如 <script>、<img>、</…>、<!--）。",
}


def no_markup(value: str) -> str:
    if _MARKUP.search(value):
        raise PydanticCustomError(MARKUP_NOT_ALLOWED, "must be plain text: HTML markup (tags "
                                  "such as <script>, <img> or </…>, comments <!--) is not "
                                  "accepted")
    return value


def plain_text(max_length: int, min_length: int = 1) -> Any:
    """Free text people write for other people to read (complaints, replies, adverse-event
    reports): `text` without HTML markup. The pages show it as text anyway; refusing markup
    keeps it out of the records, exports and whatever else will display them later."""
    return Annotated[text(max_length, min_length), AfterValidator(no_markup)]


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
