"""Face records (issues 3, 4): a doctor's enrolled face and each verification attempt's
outcome, and a guardian's enrolled face (what presence detection compares the patient side's
video against).

The 128-d encoding is what verification compares against; the photo itself stays in protected
storage (identity/faces/storage.py) and only its SHA-256 and relative path are here. Attempts
are also events in the consultation's hash-chained log; this table is the index a reviewer queries.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UTCDateTime, new_id, utcnow


class EnrolledFace:
    """What an enrolled face keeps, doctor's or guardian's: the 128-d encoding checks compare
    against, and the photo's hash and relative path in protected storage (never the photo)."""

    encoding: Mapped[list[float]] = mapped_column(JSON)
    photo_sha256: Mapped[str] = mapped_column(String(64))
    photo_path: Mapped[str] = mapped_column(String(300))
    face_px: Mapped[int] = mapped_column(Integer)
    enrolled_by: Mapped[str] = mapped_column(String(200))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FaceEnrollment(EnrolledFace, Base):
    __tablename__ = "face_enrollments"

    doctor_id: Mapped[str] = mapped_column(ForeignKey("doctors.id"), primary_key=True)


class FaceVerification(Base):
    __tablename__ = "face_verifications"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("fv"))
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    doctor_id: Mapped[str] = mapped_column(ForeignKey("doctors.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(40))
    # The actions asked, in order, comma-separated ("turn_left,blink,turn_right").
    challenge: Mapped[str | None] = mapped_column(String(60))
    distance: Mapped[float | None] = mapped_column(Float)
    frames: Mapped[int] = mapped_column(Integer)
    thumbnail_path: Mapped[str | None] = mapped_column(String(300))
    thumbnail_sha256: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GuardianFaceEnrollment(EnrolledFace, Base):
    __tablename__ = "guardian_face_enrollments"

    guardian_id: Mapped[str] = mapped_column(ForeignKey("guardians.id"), primary_key=True)
