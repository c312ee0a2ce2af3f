"""Questions and complaints: the guardian opens one on the consultation's link; quality staff (or
admin) reply and close it. Events: `feedback.opened` {ref, kind, category, text_sha256},
`feedback.replied` {ref, by, text_sha256}, `feedback.closed` {ref, by}.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.store import Database, EventLog
from core.store.models import utcnow
from core.store.quality import Feedback, FeedbackReply
from server.quality import MAX_PER_CONSULTATION, Refused, digest, hold, refs

PREFIX = "TS"


@dataclass(frozen=True)
class Thread:
    """A question or complaint and the replies to it, oldest first."""

    item: Feedback
    replies: list[FeedbackReply]


async def open_item(db: Database, events: EventLog, cid: str, actor: str, kind: str,
                    category: str | None, text: str, at: datetime) -> Feedback:
    """Store a question or complaint under a new TS- number; `feedback.opened` with it."""
    async with db.session() as session:
        count = await session.scalar(select(func.count()).where(Feedback.consultation_id == cid))
    if (count or 0) >= MAX_PER_CONSULTATION:
        raise Refused(429, "too_many",
                      f"at most {MAX_PER_CONSULTATION} questions and complaints per consultation",
                      f"每次问诊最多提交{MAX_PER_CONSULTATION}条咨询或投诉，请致电医院")

    def make(ref: str) -> Feedback:
        return Feedback(ref=ref, consultation_id=cid, kind=kind, category=category, text=text,
                        opened_by=actor, created_at=at)

    return await refs.store_numbered(
        db, events, PREFIX, Feedback.ref, at, make, cid, "feedback.opened", actor,
        lambda ref: {"ref": ref, "kind": kind, "category": category,
                     "text_sha256": digest(text)})


async def _find(db: Database, ref: str) -> Feedback:
    async with db.session() as session:
        item = await session.scalar(select(Feedback).where(Feedback.ref == ref))
    if item is None:
        raise Refused(404, "no_feedback", f"no question or complaint {ref}",
                      f"没有编号为 {ref} 的咨询或投诉")
    return item


async def _open_row(session: AsyncSession, item: Feedback) -> Feedback:
    """The row as it is now, its consultation held for this transaction; refused once closed."""
    await hold(session, item.consultation_id)
    row = await session.get(Feedback, item.id)
    assert row is not None
    if row.status == "closed":
        raise Refused(409, "closed", f"{row.ref} is closed", f"{row.ref} 已办结")
    return row


async def reply(db: Database, events: EventLog, ref: str, actor: str, by: str,
                text: str) -> FeedbackReply:
    """Answer an open item; the guardian sees the answer on their link."""
    item = await _find(db, ref)
    stored: list[FeedbackReply] = []

    async def store(session: AsyncSession) -> None:
        row = await _open_row(session, item)
        row.status = "replied"
        answer = FeedbackReply(feedback_id=item.id, author=actor, text=text, created_at=utcnow())
        session.add(answer)
        stored.append(answer)

    await events.append(item.consultation_id, "feedback.replied", actor,
                        {"ref": ref, "by": by, "text_sha256": digest(text)}, with_change=store)
    return stored[-1]


async def close(db: Database, events: EventLog, ref: str, actor: str, by: str) -> Feedback:
    """Close an item (answered or not); nothing more can be added to it."""
    item = await _find(db, ref)
    stored: list[Feedback] = []

    async def store(session: AsyncSession) -> None:
        row = await _open_row(session, item)
        row.status, row.closed_by, row.closed_at = "closed", actor, utcnow()
        stored.append(row)

    await events.append(item.consultation_id, "feedback.closed", actor,
                        {"ref": ref, "by": by}, with_change=store)
    return stored[-1]


async def threads(db: Database, cid: str | None = None, closed: bool | None = None,
                  limit: int = 200) -> list[Thread]:
    """Items with their replies: of one consultation, or all open (or all closed) ones."""
    query = select(Feedback)
    if cid is not None:
        query = query.where(Feedback.consultation_id == cid)
    if closed is not None:
        query = query.where((Feedback.status == "closed") if closed
                            else (Feedback.status != "closed"))
    async with db.session() as session:
        items = list(await session.scalars(
            query.order_by(Feedback.created_at, Feedback.ref).limit(limit)))
        replies = list(await session.scalars(
            select(FeedbackReply).where(FeedbackReply.feedback_id.in_([i.id for i in items]))
            .order_by(FeedbackReply.created_at, FeedbackReply.id)))
    return [Thread(i, [r for r in replies if r.feedback_id == i.id]) for i in items]
