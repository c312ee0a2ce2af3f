"""Demo data for a local run: the pilot hospitals, a doctor, a child patient, a guardian and a
consultation booked through the same eligibility checks as the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from core.auth import Role, Tokens
from core.config import Settings
from core.policy import Policy, consultation_date, load_policy
from core.store import Database, EventLog, Hospital, records
from core.store.clinical import PriorDiagnosis
from server.booking import BookingRequest, book


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


async def pilot_hospitals(db: Database, policy: Policy) -> list[Hospital]:
    """The policy's pilot hospitals as records (created once, with the policy's ids)."""
    found = []
    for h in policy.hospitals:
        hospital = await records.get_hospital(db, h.id)
        if hospital is None:
            try:
                hospital = await records.create_hospital(db, id=h.id, name=h.name, city=h.city)
            except IntegrityError:  # another seed made it first
                hospital = await records.get_hospital(db, h.id)
        assert hospital is not None
        found.append(hospital)
    return found


async def seed(db: Database, settings: Settings, tokens: Tokens) -> Booking:
    """Book a consultation the policy allows today: a pilot first visit while the pilot runs,
    otherwise a follow-up on a prior diagnosis (so the demo keeps working after the pilot)."""
    policy = load_policy()
    hospital = (await pilot_hospitals(db, policy))[0]
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
    when = datetime.now(UTC) + timedelta(minutes=5)
    first = policy.window_from <= consultation_date(when, policy.timezone) <= policy.window_to
    prior_id = None
    if not first:
        prior = PriorDiagnosis(
            patient_id=patient.id, institution=hospital.name, institution_hospital_id=hospital.id,
            diagnosis="矮小症 Short stature", diagnosed_on=date(2025, 9, 1),
            document_ref="DEMO-EMR-0001")
        async with db.session() as session, session.begin():
            session.add(prior)
        prior_id = prior.id
    consultation, _ = await book(db, EventLog(db), policy, BookingRequest(
        hospital_id=hospital.id, specialty="儿童生长发育", doctor_id=doctor.id,
        patient_id=patient.id, guardian_id=guardian.id,
        visit_type="first" if first else "follow_up", scheduled_at=when,
        prior_diagnosis_id=prior_id), "system:demo")
    cid = consultation.id
    return Booking(
        cid, doctor.id, guardian.id,
        join_link(settings, tokens, Role.DOCTOR, doctor.id, cid),
        join_link(settings, tokens, Role.GUARDIAN, guardian.id, cid),
    )
