"""Reference numbers people can read out on the phone: `TS-20261202-0007`, `AE-20261202-0003`.

The prefix says what it is (TS 投诉/咨询: a question or complaint; AE: an adverse event), the
date is the Beijing calendar day it was filed, the number counts that day's filings from 1.
Numbers are taken under a per-process lock; a number another node stored in the meantime is
found when storing (`RefTaken`: take the next), and the table's unique constraint has the last
word on two stored at the same instant.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from core.policy.dates import SHANGHAI
from core.store import Database, EventLog
from core.store.models import Base
from server.quality import hold

PATTERN = re.compile(r"^(TS|AE)-\d{8}-\d{4,6}$")
ATTEMPTS = 20
_LOCKS: dict[str, asyncio.Lock] = {}
Row = TypeVar("Row", bound=Base)


class RefTaken(Exception):
    """Another writer stored this reference number first: take the next one."""


def lock(prefix: str) -> asyncio.Lock:
    """Serialise taking numbers of one kind within this process."""
    return _LOCKS.setdefault(prefix, asyncio.Lock())


def stem(prefix: str, at: datetime) -> str:
    return f"{prefix}-{at.astimezone(SHANGHAI):%Y%m%d}-"


async def next_ref(session: AsyncSession, column: InstrumentedAttribute[str], prefix: str,
                   at: datetime) -> str:
    """The next number of `prefix` on `at`'s Beijing day (rows are never deleted: count + 1)."""
    day = stem(prefix, at)
    taken = await session.scalar(select(func.count()).where(column.like(f"{day}%")))
    return f"{day}{int(taken or 0) + 1:04d}"


async def ensure_free(session: AsyncSession, column: InstrumentedAttribute[str], ref: str) -> None:
    """Inside the storing transaction: refuse a number that another node has stored since."""
    if await session.scalar(select(func.count()).where(column == ref)):
        raise RefTaken(ref)


async def store_numbered(db: Database, events: EventLog, prefix: str,
                         column: InstrumentedAttribute[str], at: datetime,
                         make: Callable[[str], Row], chain: str, kind: str, actor: str,
                         data: Callable[[str], dict[str, Any]]) -> Row:
    """Store the row `make(ref)` and its event `kind` with `data(ref)` in one transaction,
    under the next free reference number."""
    async with lock(prefix):
        for _ in range(ATTEMPTS):
            async with db.session() as session:
                ref = await next_ref(session, column, prefix, at)
            stored: list[Row] = []

            async def store(session: AsyncSession, ref: str = ref,
                            stored: list[Row] = stored) -> None:
                await hold(session, chain)
                await ensure_free(session, column, ref)
                row = make(ref)  # a fresh row for every attempt of the transaction
                session.add(row)
                stored.append(row)

            try:
                await events.append(chain, kind, actor, data(ref), with_change=store)
            except RefTaken:
                continue
            return stored[-1]
    raise RuntimeError(f"no free {prefix} reference number after {ATTEMPTS} attempts")
