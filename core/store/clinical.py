"""Records for eligibility, consent and referral (issue 6), on the shared declarative Base.

Kept apart from models.py so the booking/referral work does not collide with other changes
there; `core/store/__init__.py` imports this module so the tables are in Base.metadata.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    String,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UTCDateTime, new_id, utcnow

TERMINATION_REASONS = ("condition_changed", "needs_in_person", "first_visit_outside_pilot",
                       "guardian_absent", "technical_failure", "doctor_identity_lost", "other")
# The reasons a doctor may give (the `terminate` message): all but the identity checks' own.
DOCTOR_REASONS = tuple(reason for reason in TERMINATION_REASONS
                       if reason != "doctor_identity_lost")
URGENCIES = ("routine", "urgent", "emergency")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class PriorDiagnosis(Base):
    """A diagnosis made at a physical hospital: what a follow-up online visit builds on."""

    __tablename__ = "prior_diagnoses"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dx"))
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    institution: Mapped[str] = mapped_column(String(200))
    institution_hospital_id: Mapped[str | None] = mapped_column(ForeignKey("hospitals.id"))
    institution_is_physical: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true())
    diagnosis: Mapped[str] = mapped_column(String(500))
    diagnosed_on: Mapped[date] = mapped_column(Date)
    document_ref: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Booking(Base):
    """How a consultation was booked: by whom, under which policy, on which prior diagnosis."""

    __tablename__ = "bookings"

    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"),
                                                 primary_key=True)
    prior_diagnosis_id: Mapped[str | None] = mapped_column(ForeignKey("prior_diagnoses.id"))
    policy: Mapped[str] = mapped_column(String(100))
    booked_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Consent(Base):
    """The guardian's (or adult patient's) acceptance of one version of the consent text."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("consultation_id", "version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ic"))
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"))
    version: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    accepted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Referral(Base):
    """Why a consultation was terminated and where the patient must go: one per consultation."""

    __tablename__ = "referrals"
    __table_args__ = (
        UniqueConstraint("consultation_id"),
        CheckConstraint(_one_of("reason", TERMINATION_REASONS), name="reason"),
        CheckConstraint(_one_of("urgency", URGENCIES), name="urgency"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("r"))
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"))
    reason: Mapped[str] = mapped_column(String(40))
    reason_text: Mapped[str | None] = mapped_column(String(500))
    hospital: Mapped[str] = mapped_column(String(200))
    department: Mapped[str] = mapped_column(String(100))
    urgency: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
