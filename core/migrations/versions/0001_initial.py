"""Initial schema: hospitals, doctors, patients, guardians, consultations, events.

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "hospitals",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("is_physical", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_hospitals"),
    )
    op.create_table(
        "doctors",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("hospital_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("national_id_masked", sa.String(32), nullable=False),
        sa.Column("licence_no", sa.String(64), nullable=False),
        sa.Column("title", sa.String(20), nullable=False),
        sa.Column("clinical_practice_since", sa.Date(), nullable=True),
        sa.Column("online_practice_since", sa.Date(), nullable=True),
        sa.Column("training_passed_on", sa.Date(), nullable=True),
        sa.Column("specialties", sa.JSON(), nullable=False),
        sa.Column("whitelist_status", sa.String(20), server_default="active", nullable=False),
        sa.Column("whitelist_reason", sa.String(500), nullable=True),
        sa.Column("whitelist_changed_at", _tz(), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_doctors"),
        sa.ForeignKeyConstraint(["hospital_id"], ["hospitals.id"],
                                name="fk_doctors_hospital_id_hospitals"),
        sa.CheckConstraint("title IN ('resident', 'attending', 'associate_chief', 'chief')",
                           name="ck_doctors_title"),
        sa.CheckConstraint("whitelist_status IN ('active', 'suspended', 'revoked')",
                           name="ck_doctors_whitelist_status"),
    )
    op.create_index("ix_doctors_hospital_id", "doctors", ["hospital_id"])
    op.create_table(
        "patients",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("national_id_masked", sa.String(32), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_patients"),
    )
    op.create_table(
        "guardians",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("patient_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("relation", sa.String(40), nullable=False),
        sa.Column("national_id_masked", sa.String(32), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_guardians"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
                                name="fk_guardians_patient_id_patients"),
    )
    op.create_index("ix_guardians_patient_id", "guardians", ["patient_id"])
    op.create_table(
        "consultations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("hospital_id", sa.String(40), nullable=False),
        sa.Column("doctor_id", sa.String(40), nullable=False),
        sa.Column("patient_id", sa.String(40), nullable=False),
        sa.Column("guardian_id", sa.String(40), nullable=True),
        sa.Column("specialty", sa.String(100), nullable=False),
        sa.Column("visit_type", sa.String(20), nullable=False),
        sa.Column("scheduled_at", _tz(), nullable=False),
        sa.Column("state", sa.String(20), server_default="scheduled", nullable=False),
        sa.Column("node_id", sa.String(200), nullable=True),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("started_at", _tz(), nullable=True),
        sa.Column("ended_at", _tz(), nullable=True),
        sa.Column("end_reason", sa.String(500), nullable=True),
        sa.Column("event_seq", sa.Integer(), server_default="0", nullable=False),
        sa.Column("event_head", sa.String(64), server_default=GENESIS_HASH, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consultations"),
        sa.ForeignKeyConstraint(["hospital_id"], ["hospitals.id"],
                                name="fk_consultations_hospital_id_hospitals"),
        sa.ForeignKeyConstraint(["doctor_id"], ["doctors.id"],
                                name="fk_consultations_doctor_id_doctors"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
                                name="fk_consultations_patient_id_patients"),
        sa.ForeignKeyConstraint(["guardian_id"], ["guardians.id"],
                                name="fk_consultations_guardian_id_guardians"),
        sa.CheckConstraint("visit_type IN ('first', 'follow_up')",
                           name="ck_consultations_visit_type"),
    )
    op.create_index("ix_consultations_doctor_id", "consultations", ["doctor_id"])
    op.create_index("ix_consultations_patient_id", "consultations", ["patient_id"])
    op.create_index("ix_consultations_state", "consultations", ["state"])
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("chain", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", _tz(), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("chain", "seq", name="uq_events_chain_seq"),
    )
    op.create_index("ix_events_at", "events", ["at"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("consultations")
    op.drop_table("guardians")
    op.drop_table("patients")
    op.drop_table("doctors")
    op.drop_table("hospitals")
