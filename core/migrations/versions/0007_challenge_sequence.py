"""A verification attempt asks for a sequence of actions (issue 14): face_verifications.challenge
holds them comma-separated ("turn_left,blink,turn_right"), longer than one action's 20 characters.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("face_verifications") as batch:
        batch.alter_column("challenge", type_=sa.String(60), existing_type=sa.String(20),
                           existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("face_verifications") as batch:
        batch.alter_column("challenge", type_=sa.String(20), existing_type=sa.String(60),
                           existing_nullable=True)
