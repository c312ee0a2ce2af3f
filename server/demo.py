"""Demo data for a local run: one hospital, doctor, child patient, guardian and consultation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from server.auth import Role, Tokens
from server.config import Settings
from server.store import Database, records


@dataclass(frozen=True)
class Booking:
    consultation_id: str
    doctor_id: str
    guardian_id: str
    doctor_link: str
    guardian_link: str


def join_link(settings: Settings, tokens: Tokens, role: Role, subject: str, cid: str) -> str:
    """The token rides in the URL fragment, so it never reaches a server's access log."""
    return f"{settings.public_url}/call#token={tokens.issue(role, subject, cid)}"


async def seed(db: Database, settings: Settings, tokens: Tokens) -> Booking:
    hospital = await records.create_hospital(db, name="北京儿童医院 Beijing Children's Hospital",
                                             city="北京")
    doctor = await records.create_doctor(
        db, hospital_id=hospital.id, name="王医生 Dr. Wang",
        national_id_masked="110***********1234",
        licence_no="110110000012345", title="attending",
        clinical_practice_since=date(2015, 7, 1), online_practice_since=date(2023, 3, 1),
        training_passed_on=date(2025, 11, 20), specialties=["儿童生长发育"],
    )
    patient = await records.create_patient(db, name="李小明", birth_date=date(2021, 5, 4))
    guardian = await records.create_guardian(db, patient_id=patient.id, name="李华",
                                             relation="mother")
    consultation = await records.create_consultation(
        db, hospital_id=hospital.id, doctor_id=doctor.id, patient_id=patient.id,
        guardian_id=guardian.id, specialty="儿童生长发育", visit_type="first",
        scheduled_at=datetime.now(UTC) + timedelta(minutes=5),
    )
    cid = consultation.id
    return Booking(
        cid, doctor.id, guardian.id,
        join_link(settings, tokens, Role.DOCTOR, doctor.id, cid),
        join_link(settings, tokens, Role.GUARDIAN, guardian.id, cid),
    )
