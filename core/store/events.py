"""The append-only, hash-chained audit log.

Each event's hash covers its content and the hash of the event before it, so an edited or
removed event breaks the chain. A consultation's chain head (event_seq, event_head) is kept on the
consultation row and moved in the same transaction as the append, so that removing the *last*
events (which leaves a valid shorter chain) is detectable too. The 'system' chain has no such
row: truncating its tail is not detectable from the database alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.store.db import Database
from core.store.models import GENESIS_HASH, SYSTEM_CHAIN, Consultation, Event, utcnow


def canonical_json(value: Any) -> str:
    """The one serialisation that hashes are computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def safe_text(value: str, limit: int = 500) -> str:
    """`value` as text every store and the hash below take, for recording what a client sent:
    NUL (PostgreSQL refuses it) and lone surrogates (nothing can encode them) become their
    escapes, e.g. `\\ud800`; at most `limit` characters."""
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m[0]):04x}", value[:limit])


def event_hash(prev_hash: str, chain: str, seq: int, at: datetime, kind: str, actor: str,
               data: dict[str, Any]) -> str:
    body = canonical_json({
        "chain": chain,
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "kind": kind,
        "actor": actor,
        "data": data,
    })
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _json_data(data: dict[str, Any]) -> dict[str, Any]:
    """Refuse what JSON cannot hold, and return the data as it will read back (tuples → lists)."""
    if not isinstance(data, dict):
        raise TypeError(f"event data must be a dict, not {type(data).__name__}")
    try:
        return json.loads(canonical_json(data))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"event data is not JSON-serialisable: {exc}") from exc


@dataclass
class ChainReport:
    ok: bool
    count: int
    problems: list[str] = field(default_factory=list)
    # The events checked, in order: a caller that reads them too need not read them again.
    events: list[Event] = field(default_factory=list, repr=False)


Change = Callable[[AsyncSession], Awaitable[None]]


class _LostRace(Exception):
    """Another writer took the sequence number first; try again."""


class EventLog:
    """Appends and checks event chains. One chain per consultation id, plus 'system'."""

    def __init__(self, db: Database, retries: int = 10) -> None:
        self.db = db
        self.retries = retries
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    def _lock(self, chain: str) -> asyncio.Lock:
        lock = self._locks.get(chain)
        if lock is None:
            lock = self._locks[chain] = asyncio.Lock()
        return lock

    async def append(self, chain: str, kind: str, actor: str, data: dict[str, Any],
                     with_change: Change | None = None) -> Event:
        """Add one event at the end of `chain`.

        `with_change(session)` runs in the same transaction first (a state change, say), so the
        change and its event are stored together or not at all; whatever it raises aborts both.
        Appends within this process are serialised per chain by a lock; between processes
        (several nodes on one PostgreSQL) the unique (chain, seq) constraint and the row lock on
        the consultation decide, and the loser retries.
        """
        data = _json_data(data)
        async with self._lock(chain):
            for attempt in range(self.retries):
                try:
                    async with self.db.session() as session, session.begin():
                        if with_change is not None:
                            await with_change(session)
                        return await self._append(session, chain, kind, actor, data)
                except (IntegrityError, _LostRace):
                    if attempt == self.retries - 1:
                        raise
                    await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise AssertionError("unreachable")

    async def _append(self, session: AsyncSession, chain: str, kind: str, actor: str,
                      data: dict[str, Any]) -> Event:
        if chain == SYSTEM_CHAIN:
            last = (await session.execute(
                select(Event.seq, Event.hash).where(Event.chain == chain)
                .order_by(Event.seq.desc()).limit(1))).first()
            seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS_HASH)
        else:
            # Writing first takes the row lock (PostgreSQL) or the write lock (SQLite) at once,
            # and claims the next sequence number from the consultation's recorded head.
            head = (await session.execute(
                update(Consultation).where(Consultation.id == chain)
                .values(event_seq=Consultation.event_seq + 1)
                .returning(Consultation.event_seq, Consultation.event_head)
                .execution_options(synchronize_session=False))).first()
            if head is None:
                raise LookupError(f"no consultation {chain!r}: events go to a consultation's "
                                  f"chain or to {SYSTEM_CHAIN!r}")
            seq, prev_hash = head.event_seq, head.event_head
        at = utcnow()
        event = Event(chain=chain, seq=seq, at=at, kind=kind, actor=actor, data=data,
                      prev_hash=prev_hash,
                      hash=event_hash(prev_hash, chain, seq, at, kind, actor, data))
        session.add(event)
        await session.flush()
        if chain != SYSTEM_CHAIN:
            moved = await session.execute(
                update(Consultation)
                .where(Consultation.id == chain, Consultation.event_seq == seq)
                .values(event_head=event.hash)
                .execution_options(synchronize_session=False))
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise _LostRace(chain)
        return event

    async def events(self, chain: str) -> list[Event]:
        """The chain's events in order."""
        async with self.db.session() as session:
            result = await session.scalars(
                select(Event).where(Event.chain == chain).order_by(Event.seq))
            return list(result)

    async def verify(self, chain: str) -> ChainReport:
        """Recompute the chain and compare it with what is stored; problems in plain words."""
        async with self.db.session() as session:
            # The head first, then every event, then the head again. Events up to the first head
            # must all be there; events appended while we read (the call goes on while an
            # auditor checks) lie between the two heads; an event beyond the second head never
            # went through `append`: it was written into the table behind the log's back.
            consultation = None
            if chain != SYSTEM_CHAIN:
                consultation = await session.get(Consultation, chain)
            events = list(await session.scalars(
                select(Event).where(Event.chain == chain).order_by(Event.seq)))
            if consultation is not None:
                head_now = await session.scalar(
                    select(Consultation.event_seq).where(Consultation.id == chain))
                forged = [ev for ev in events if ev.seq > head_now]
                events = [ev for ev in events if ev.seq <= head_now]
        problems: list[str] = []
        expected_seq, prev_hash = 1, GENESIS_HASH
        for ev in events:
            if ev.seq > expected_seq:
                problems.append(_missing(expected_seq, ev.seq - 1))
            elif ev.seq < expected_seq:
                problems.append(f"event {ev.seq}: out of order")
            if ev.prev_hash != prev_hash:
                problems.append(f"event {ev.seq}: does not link to the event before it "
                                f"(prev_hash mismatch)")
            if ev.hash != event_hash(ev.prev_hash, ev.chain, ev.seq, ev.at, ev.kind, ev.actor,
                                     ev.data):
                problems.append(f"event {ev.seq}: hash does not match its content")
            expected_seq, prev_hash = ev.seq + 1, ev.hash
        if chain != SYSTEM_CHAIN:
            problems += _check_head(chain, consultation, events)
        if consultation is not None:
            problems += [f"event {ev.seq}: after the last event the consultation records "
                         f"(written outside the log)" for ev in forged]
        return ChainReport(ok=not problems, count=len(events), problems=problems,
                           events=events)


def _missing(first: int, last: int) -> str:
    if first == last:
        return f"event {first} is missing"
    return f"events {first}–{last} are missing"


def _check_head(chain: str, consultation: Consultation | None, events: list[Event]) -> list[str]:
    """Compare the chain's end with the head recorded on the consultation."""
    if consultation is None:
        return [f"no consultation {chain!r}, so the chain's end cannot be checked"]
    covered = [ev for ev in events if ev.seq <= consultation.event_seq]
    last_seq = covered[-1].seq if covered else 0
    last_hash = covered[-1].hash if covered else GENESIS_HASH
    if consultation.event_seq > last_seq:
        return [_missing(last_seq + 1, consultation.event_seq) + " at the end of the chain "
                f"(the consultation records {consultation.event_seq} events)"]
    if consultation.event_head != last_hash:
        return [f"event {last_seq}: not the last event the consultation records "
                f"(chain head mismatch)"]
    return []
