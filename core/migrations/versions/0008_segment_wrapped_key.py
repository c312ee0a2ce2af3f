"""Envelope encryption of recordings (issue 12): each segment's data key, wrapped by the
deployment's master key, is kept beside the stored object in recording_segments.wrapped_key.
Rows from before keep NULL (their segments are sealed with the master key itself).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recording_segments") as batch:
        batch.add_column(sa.Column("wrapped_key", sa.String(100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recording_segments") as batch:
        batch.drop_column("wrapped_key")
