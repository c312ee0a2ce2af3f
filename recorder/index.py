"""Reading and writing the recordings index (core/store/recordings.py) in short transactions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select, update

from core.store import Database
from core.store.recordings import Recording, RecordingSegment

if TYPE_CHECKING:
    from .segment import Stored
    from .webm import MuxStats


def add_years(at: datetime, years: int) -> datetime:
    """The same instant `years` later on the calendar (29 February becomes 28 February)."""
    try:
        return at.replace(year=at.year + years)
    except ValueError:
        return (at - timedelta(days=1)).replace(year=at.year + years)


def retain_until(at: datetime, years: int) -> datetime:
    """Kept at least three years (the rule), or `years` (TC_RETENTION_YEARS) when longer.

    A recording's retain_until counts from its end; each segment is written to a store with
    Object Lock counting from when it was stored, which is never later than the end: the store
    lets go of every segment by the time the database says the recording may go."""
    return add_years(at, max(3, years))


async def start_recording(db: Database, cid: str, epoch_at: datetime) -> Recording:
    """The recording's row, created at the first `active`; a restart keeps the first epoch."""
    async with db.session() as session, session.begin():
        row = await session.get(Recording, cid)
        if row is None:
            row = Recording(consultation_id=cid, status="recording", epoch_at=epoch_at)
            session.add(row)
        else:
            row.status = "recording"
        return row


async def get_recording(db: Database, cid: str) -> Recording | None:
    async with db.session() as session:
        return await session.get(Recording, cid)


async def update_recording(db: Database, cid: str, **values: Any) -> None:
    async with db.session() as session, session.begin():
        await session.execute(update(Recording).where(Recording.consultation_id == cid)
                              .values(**values))


async def recordings_in(db: Database, status: str) -> list[Recording]:
    async with db.session() as session:
        return list(await session.scalars(select(Recording).where(Recording.status == status)))


def segment_values(cid: str, epoch_at: datetime, role: str, seq: int, t_start_ms: int,
                   stats: MuxStats, stored: Stored, state: str) -> dict[str, Any]:
    """A stored segment's index row, its times on the recording's clock (`epoch_at`)."""
    started = epoch_at + timedelta(milliseconds=t_start_ms)
    return {
        "consultation_id": cid, "role": role, "seq": seq, "state": state,
        "storage_key": stored.storage_key, "key_id": stored.key_id,
        "wrapped_key": stored.wrapped_key,
        "t_start_ms": t_start_ms, "duration_ms": stats.duration_ms,
        "started_at": started, "ended_at": started + timedelta(milliseconds=stats.duration_ms),
        "video_packets": stats.video_packets, "audio_packets": stats.audio_packets,
        "size": stored.size, "sha256": stored.sha256, "plain_size": stored.plain_size,
    }


async def save_segment(db: Database, values: dict[str, Any]) -> RecordingSegment:
    """Insert the closed segment, or (a recovery re-run) replace the row with the same seq."""
    async with db.session() as session, session.begin():
        row = await session.scalar(_numbered(values["consultation_id"], values["role"],
                                             values["seq"]))
        if row is None:
            row = RecordingSegment(**values)
            session.add(row)
        else:
            for k, v in values.items():
                setattr(row, k, v)
        return row


async def segments(db: Database, cid: str) -> list[RecordingSegment]:
    async with db.session() as session:
        return list(await session.scalars(
            select(RecordingSegment).where(RecordingSegment.consultation_id == cid)
            .order_by(RecordingSegment.t_start_ms, RecordingSegment.role)))


async def get_segment(db: Database, segment_id: str) -> RecordingSegment | None:
    async with db.session() as session:
        return await session.get(RecordingSegment, segment_id)


def _numbered(cid: str, role: str, seq: int) -> Select[tuple[RecordingSegment]]:
    return select(RecordingSegment).where(RecordingSegment.consultation_id == cid,
                                          RecordingSegment.role == role,
                                          RecordingSegment.seq == seq)


async def segment_at(db: Database, cid: str, role: str, seq: int) -> RecordingSegment | None:
    async with db.session() as session:
        return await session.scalar(_numbered(cid, role, seq))


async def max_seq(db: Database, cid: str, role: str) -> int:
    rows = [s.seq for s in await segments(db, cid) if s.role == role]
    return max(rows, default=-1)


async def expired(db: Database, now: datetime | None = None) -> list[tuple[Recording,
                                                                      RecordingSegment]]:
    """Segments past their recording's retain_until, not purged, with the recording's hold."""
    now = now or datetime.now(UTC)
    async with db.session() as session:
        rows = await session.execute(
            select(Recording, RecordingSegment)
            .join(RecordingSegment, RecordingSegment.consultation_id == Recording.consultation_id)
            .where(Recording.retain_until.is_not(None), Recording.retain_until < now,
                   RecordingSegment.state != "purged"))
        return [(r, s) for r, s in rows.all()]


async def mark_purged(db: Database, segment_id: str, at: datetime) -> None:
    async with db.session() as session, session.begin():
        await session.execute(update(RecordingSegment).where(RecordingSegment.id == segment_id)
                              .values(state="purged", purged_at=at))


async def segments_to_rewrap(db: Database, current_kid: str,
                             cids: list[str] | None = None) -> list[RecordingSegment]:
    """Stored segments whose data key (or, version 1, whose chunks) another master key holds."""
    found = select(RecordingSegment).where(RecordingSegment.state != "purged",
                                           RecordingSegment.key_id != current_kid)
    if cids:
        found = found.where(RecordingSegment.consultation_id.in_(cids))
    async with db.session() as session:
        return list(await session.scalars(found.order_by(RecordingSegment.consultation_id,
                                                         RecordingSegment.t_start_ms)))


async def set_wrapped_key(db: Database, segment_id: str, was: str, kek_id: str,
                          wrapped: str) -> bool:
    """Replace a segment's wrapped data key, only if it is still `was` (another rewrap running
    at the same time wins, and this one changes nothing)."""
    async with db.session() as session, session.begin():
        done = await session.execute(
            update(RecordingSegment).where(RecordingSegment.id == segment_id,
                                           RecordingSegment.wrapped_key == was)
            .values(key_id=kek_id, wrapped_key=wrapped))
        return bool(done.rowcount)
