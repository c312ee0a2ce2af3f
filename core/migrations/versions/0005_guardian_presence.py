"""Guardian face enrollments for presence detection (issue 4).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guardian_face_enrollments",
        sa.Column("guardian_id", sa.String(40), nullable=False),
        sa.Column("encoding", sa.JSON(), nullable=False),
        sa.Column("photo_sha256", sa.String(64), nullable=False),
        sa.Column("photo_path", sa.String(300), nullable=False),
        sa.Column("face_px", sa.Integer(), nullable=False),
        sa.Column("enrolled_by", sa.String(200), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guardian_id", name="pk_guardian_face_enrollments"),
        sa.ForeignKeyConstraint(["guardian_id"], ["guardians.id"],
                                name="fk_guardian_face_enrollments_guardian_id_guardians"),
    )


def downgrade() -> None:
    op.drop_table("guardian_face_enrollments")
