"""Face enrollments and verification attempts (issue 3).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "face_enrollments",
        sa.Column("doctor_id", sa.String(40), nullable=False),
        sa.Column("encoding", sa.JSON(), nullable=False),
        sa.Column("photo_sha256", sa.String(64), nullable=False),
        sa.Column("photo_path", sa.String(300), nullable=False),
        sa.Column("face_px", sa.Integer(), nullable=False),
        sa.Column("enrolled_by", sa.String(200), nullable=False),
        sa.Column("enrolled_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("doctor_id", name="pk_face_enrollments"),
        sa.ForeignKeyConstraint(["doctor_id"], ["doctors.id"],
                                name="fk_face_enrollments_doctor_id_doctors"),
    )
    op.create_table(
        "face_verifications",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("consultation_id", sa.String(40), nullable=False),
        sa.Column("doctor_id", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("challenge", sa.String(20), nullable=True),
        sa.Column("distance", sa.Float(), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("thumbnail_path", sa.String(300), nullable=True),
        sa.Column("thumbnail_sha256", sa.String(64), nullable=True),
        sa.Column("at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_face_verifications"),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"],
                                name="fk_face_verifications_consultation_id_consultations"),
        sa.ForeignKeyConstraint(["doctor_id"], ["doctors.id"],
                                name="fk_face_verifications_doctor_id_doctors"),
    )
    op.create_index("ix_face_verifications_consultation_id", "face_verifications",
                    ["consultation_id"])


def downgrade() -> None:
    op.drop_index("ix_face_verifications_consultation_id", "face_verifications")
    op.drop_table("face_verifications")
    op.drop_table("face_enrollments")
