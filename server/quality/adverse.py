"""Adverse events (负性事件处置预案): filed by the consultation's doctor (during or after the call)
or by quality staff, with a severity; a severe one alerts ops at once. Each has a handling record:
who did what and when, then who closed it and when.

Events: `adverse_event.filed` {ref, severity, by, text_sha256}, `adverse_event.handled`
{ref, by, action, text_sha256}, `adverse_event.closed` {ref, by}.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.alerts import Alert, publish_alert
from core.live import LiveState
from core.store import Database, EventLog
from core.store.models import utcnow
from core.store.quality import AdverseEvent, AdverseEventAction
from server.quality import MAX_PER_CONSULTATION, Refused, digest, hold, refs

PREFIX = "AE"
SEVERE = "severe"
ALERT_KIND = "adverse_event.severe"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """An adverse event and its handling steps, oldest first."""

    event: AdverseEvent
    actions: list[AdverseEventAction]


async def file(db: Database, events: EventLog, cid: str, actor: str, by: str, severity: str,
               description: str, at: datetime) -> AdverseEvent:
    """Store an adverse event under a new AE- number; `adverse_event.filed` with it."""
    async with db.session() as session:
        count = await session.scalar(
            select(func.count()).where(AdverseEvent.consultation_id == cid))
    if (count or 0) >= MAX_PER_CONSULTATION:
        raise Refused(429, "too_many",
                      f"at most {MAX_PER_CONSULTATION} adverse events per consultation",
                      f"每次问诊最多登记{MAX_PER_CONSULTATION}条负性事件")

    def make(ref: str) -> AdverseEvent:
        return AdverseEvent(ref=ref, consultation_id=cid, severity=severity,
                            description=description, filed_by=actor, created_at=at)

    return await refs.store_numbered(
        db, events, PREFIX, AdverseEvent.ref, at, make, cid, "adverse_event.filed", actor,
        lambda ref: {"ref": ref, "severity": severity, "by": by,
                     "text_sha256": digest(description)})


async def alert_ops(live: LiveState, node: str, row: AdverseEvent) -> bool:
    """A severe adverse event, on every ops page at once (the same channel as other alerts).

    The alert names the consultation and the reference, never the description. False when the
    live state is down: the event is stored either way and the quality page lists it.
    """
    return await publish_alert(live, Alert(
        ALERT_KIND, f"严重负性事件 {row.ref}，请立即处置 Severe adverse event {row.ref}: "
                    f"handle it now", node, row.consultation_id,
        {"ref": row.ref, "severity": row.severity}))


async def _find(db: Database, ref: str) -> AdverseEvent:
    async with db.session() as session:
        row = await session.scalar(select(AdverseEvent).where(AdverseEvent.ref == ref))
    if row is None:
        raise Refused(404, "no_adverse_event", f"no adverse event {ref}",
                      f"没有编号为 {ref} 的负性事件")
    return row


async def _open_row(session: AsyncSession, found: AdverseEvent) -> AdverseEvent:
    """The row as it is now, its consultation held for this transaction; refused once closed."""
    await hold(session, found.consultation_id)
    row = await session.get(AdverseEvent, found.id)
    assert row is not None
    if row.status == "closed":
        raise Refused(409, "closed", f"{row.ref} is closed", f"{row.ref} 已结案")
    return row


async def handle(db: Database, events: EventLog, ref: str, actor: str, by: str, action: str,
                 note: str) -> AdverseEventAction:
    """Add a step to the handling record: what was done (`action`) and the details (`note`)."""
    found = await _find(db, ref)
    stored: list[AdverseEventAction] = []

    async def store(session: AsyncSession) -> None:
        row = await _open_row(session, found)
        row.status = "handling"
        step = AdverseEventAction(adverse_event_id=found.id, action=action, note=note,
                                  author=actor, created_at=utcnow())
        session.add(step)
        stored.append(step)

    await events.append(found.consultation_id, "adverse_event.handled", actor,
                        {"ref": ref, "by": by, "action": action, "text_sha256": digest(note)},
                        with_change=store)
    return stored[-1]


async def close(db: Database, events: EventLog, ref: str, actor: str, by: str) -> AdverseEvent:
    """Close an adverse event; only once its handling record says what was done."""
    found = await _find(db, ref)
    stored: list[AdverseEvent] = []

    async def store(session: AsyncSession) -> None:
        row = await _open_row(session, found)
        steps = await session.scalar(select(func.count()).where(
            AdverseEventAction.adverse_event_id == row.id))
        if not steps:
            raise Refused(409, "not_handled",
                          f"{row.ref} has no handling record yet: record what was done first",
                          f"{row.ref} 尚无处置记录，请先记录处置情况")
        row.status, row.closed_by, row.closed_at = "closed", actor, utcnow()
        stored.append(row)

    await events.append(found.consultation_id, "adverse_event.closed", actor,
                        {"ref": ref, "by": by}, with_change=store)
    return stored[-1]


async def records(db: Database, cid: str | None = None, closed: bool | None = None,
                  limit: int = 200) -> list[Record]:
    """Adverse events with their handling steps: of one consultation, or all open/closed."""
    query = select(AdverseEvent)
    if cid is not None:
        query = query.where(AdverseEvent.consultation_id == cid)
    if closed is not None:
        query = query.where((AdverseEvent.status == "closed") if closed
                            else (AdverseEvent.status != "closed"))
    async with db.session() as session:
        rows = list(await session.scalars(
            query.order_by(AdverseEvent.created_at, AdverseEvent.ref).limit(limit)))
        steps = list(await session.scalars(
            select(AdverseEventAction)
            .where(AdverseEventAction.adverse_event_id.in_([r.id for r in rows]))
            .order_by(AdverseEventAction.created_at, AdverseEventAction.id)))
    return [Record(r, [s for s in steps if s.adverse_event_id == r.id]) for r in rows]

