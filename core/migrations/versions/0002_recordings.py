"""Recordings index, legal holds (issue 5).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("consultation_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("epoch_at", _tz(), nullable=False),
        sa.Column("ended_at", _tz(), nullable=True),
        sa.Column("retain_until", _tz(), nullable=True),
        sa.Column("legal_hold", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("hold_reason", sa.String(500), nullable=True),
        sa.Column("hold_by", sa.String(200), nullable=True),
        sa.Column("hold_at", _tz(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("consultation_id", name="pk_recordings"),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"],
                                name="fk_recordings_consultation_id_consultations"),
    )
    op.create_index("ix_recordings_retain_until", "recordings", ["retain_until"])
    op.create_table(
        "recording_segments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("consultation_id", sa.String(40), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("storage_key", sa.String(300), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("t_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("started_at", _tz(), nullable=False),
        sa.Column("ended_at", _tz(), nullable=False),
        sa.Column("video_packets", sa.Integer(), nullable=False),
        sa.Column("audio_packets", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("plain_size", sa.BigInteger(), nullable=False),
        sa.Column("purged_at", _tz(), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recording_segments"),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"],
                                name="fk_recording_segments_consultation_id_consultations"),
        sa.UniqueConstraint("consultation_id", "role", "seq",
                            name="uq_recording_segments_consultation_id_role_seq"),
    )
    op.create_index("ix_recording_segments_consultation_id", "recording_segments",
                    ["consultation_id"])


def downgrade() -> None:
    op.drop_index("ix_recording_segments_consultation_id", "recording_segments")
    op.drop_table("recording_segments")
    op.drop_index("ix_recordings_retain_until", "recordings")
    op.drop_table("recordings")
