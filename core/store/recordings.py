"""The recordings index: one row per recorded consultation, one per closed segment.

The index is what integrity checks compare the stored files against (SHA-256, size, time range),
and what retention works from: `retain_until` on the recording, `legal_hold` blocking the purge.
Segment rows are never deleted: a purged segment keeps its row (state `purged`) so the record of
what existed, and when it went, outlives the media.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UTCDateTime, new_id, utcnow

SEGMENT_STATES = ("closed", "recovered", "purged")
RECORDING_STATES = ("recording", "complete", "failed", "interrupted")


class Recording(Base):
    """A consultation's recording: the shared wall-clock epoch every segment is timed from."""

    __tablename__ = "recordings"

    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"),
                                                 primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="recording")
    epoch_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retain_until: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    hold_reason: Mapped[str | None] = mapped_column(String(500))
    hold_by: Mapped[str | None] = mapped_column(String(200))
    hold_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RecordingSegment(Base):
    """One closed WebM segment of one participant (audio + video), as stored (encrypted)."""

    __tablename__ = "recording_segments"
    __table_args__ = (UniqueConstraint("consultation_id", "role", "seq"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("rs"))
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    seq: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20))
    storage_key: Mapped[str] = mapped_column(String(300))
    # The master key (its id) the segment's data key is wrapped under, and that data key,
    # wrapped (base64; recorder/keys.py). Beside the stored object, never in it: rotation
    # rewraps this value and leaves the object, and its hash, as they were. NULL for a
    # segment stored before envelope encryption (sealed directly with the key `key_id`).
    key_id: Mapped[str] = mapped_column(String(32))
    wrapped_key: Mapped[str | None] = mapped_column(String(100))
    # Milliseconds from the recording's epoch to the segment's first packet, and its length.
    t_start_ms: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    video_packets: Mapped[int] = mapped_column(Integer, default=0)
    audio_packets: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int] = mapped_column(BigInteger)  # bytes as stored (encrypted)
    sha256: Mapped[str] = mapped_column(String(64))  # of the stored bytes
    plain_size: Mapped[int] = mapped_column(BigInteger)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
