"""Bookings, prior diagnoses, consents, referrals (issue 6).

Eligibility decisions themselves are events in the consultation's chain (each lists every rule
applied); these tables hold what later steps look up.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASONS = ("condition_changed", "needs_in_person", "first_visit_outside_pilot",
           "guardian_absent", "technical_failure", "doctor_identity_lost", "other")
URGENCIES = ("routine", "urgent", "emergency")


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "prior_diagnoses",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("patient_id", sa.String(40), nullable=False),
        sa.Column("institution", sa.String(200), nullable=False),
        sa.Column("institution_hospital_id", sa.String(40), nullable=True),
        sa.Column("institution_is_physical", sa.Boolean(), server_default=sa.true(),
                  nullable=False),
        sa.Column("diagnosis", sa.String(500), nullable=False),
        sa.Column("diagnosed_on", sa.Date(), nullable=False),
        sa.Column("document_ref", sa.String(200), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prior_diagnoses"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
                                name="fk_prior_diagnoses_patient_id_patients"),
        sa.ForeignKeyConstraint(["institution_hospital_id"], ["hospitals.id"],
                                name="fk_prior_diagnoses_institution_hospital_id_hospitals"),
    )
    op.create_index("ix_prior_diagnoses_patient_id", "prior_diagnoses", ["patient_id"])
    op.create_table(
        "bookings",
        sa.Column("consultation_id", sa.String(40), nullable=False),
        sa.Column("prior_diagnosis_id", sa.String(40), nullable=True),
        sa.Column("policy", sa.String(100), nullable=False),
        sa.Column("booked_by", sa.String(200), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("consultation_id", name="pk_bookings"),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"],
                                name="fk_bookings_consultation_id_consultations"),
        sa.ForeignKeyConstraint(["prior_diagnosis_id"], ["prior_diagnoses.id"],
                                name="fk_bookings_prior_diagnosis_id_prior_diagnoses"),
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("consultation_id", sa.String(40), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("accepted_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consents"),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"],
                                name="fk_consents_consultation_id_consultations"),
        sa.UniqueConstraint("consultation_id", "version",
                            name="uq_consents_consultation_id_version"),
    )
    op.create_table(
        "referrals",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("consultation_id", sa.String(40), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("reason_text", sa.String(500), nullable=True),
        sa.Column("hospital", sa.String(200), nullable=False),
        sa.Column("department", sa.String(100), nullable=False),
        sa.Column("urgency", sa.String(20), nullable=False),
        sa.Column("note", sa.String(1000), server_default="", nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_referrals"),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"],
                                name="fk_referrals_consultation_id_consultations"),
        sa.UniqueConstraint("consultation_id", name="uq_referrals_consultation_id"),
        sa.CheckConstraint(_one_of("reason", REASONS), name="ck_referrals_reason"),
        sa.CheckConstraint(_one_of("urgency", URGENCIES), name="ck_referrals_urgency"),
    )


def downgrade() -> None:
    op.drop_table("referrals")
    op.drop_table("consents")
    op.drop_table("bookings")
    op.drop_table("prior_diagnoses")
