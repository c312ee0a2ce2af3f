"""A guardian's enrolled face (issue 4): what presence detection compares the patient side's video
against. Like a doctor's FaceEnrollment (identity/models.py): the encoding here, the photo itself
in protected storage with only its SHA-256 and relative path in the database.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.store.models import Base, UTCDateTime, utcnow


class GuardianFaceEnrollment(Base):
    __tablename__ = "guardian_face_enrollments"

    guardian_id: Mapped[str] = mapped_column(ForeignKey("guardians.id"), primary_key=True)
    encoding: Mapped[list[float]] = mapped_column(JSON)
    photo_sha256: Mapped[str] = mapped_column(String(64))
    photo_path: Mapped[str] = mapped_column(String(300))
    face_px: Mapped[int] = mapped_column(Integer)
    enrolled_by: Mapped[str] = mapped_column(String(200))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
