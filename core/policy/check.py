"""The policy applied to stored records: at booking (before the consultation exists) and when
the consultation starts (the `eligibility` accept gate). Every decision becomes an event.

At start the date is the day the consultation actually happens (Beijing calendar), not the day
it was booked for: a visit booked for 31 December that starts after midnight is outside the pilot.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from core.clock import Clock
from core.lifecycle import Gate
from core.policy.dates import consultation_date
from core.policy.engine import Decision, DoctorFacts, Facts, PriorDiagnosisFacts, evaluate
from core.policy.load import Policy
from core.store import Database, Doctor, EventLog, records
from core.store.clinical import Booking, PriorDiagnosis

DECISION_EVENT = "eligibility.decision"


def doctor_facts(doctor: Doctor) -> DoctorFacts:
    return DoctorFacts(
        hospital_id=doctor.hospital_id, licence_no=doctor.licence_no, title=doctor.title,
        whitelist_status=doctor.whitelist_status,
        clinical_practice_since=doctor.clinical_practice_since,
        online_practice_since=doctor.online_practice_since,
        training_passed_on=doctor.training_passed_on)


def prior_facts(prior: PriorDiagnosis | None, patient_id: str) -> PriorDiagnosisFacts | None:
    if prior is None:
        return None
    return PriorDiagnosisFacts(
        id=prior.id, patient_matches=prior.patient_id == patient_id,
        institution=prior.institution, institution_is_physical=prior.institution_is_physical,
        diagnosis=prior.diagnosis, diagnosed_on=prior.diagnosed_on,
        document_ref=prior.document_ref)


def decide(policy: Policy, *, on: date, visit_type: str, hospital_id: str, specialty: str,
           doctor: Doctor, patient_id: str, prior: PriorDiagnosis | None) -> Decision:
    return evaluate(policy, Facts(on=on, visit_type=visit_type, hospital_id=hospital_id,
                                  specialty=specialty, doctor=doctor_facts(doctor),
                                  prior_diagnosis=prior_facts(prior, patient_id)))


async def check_consultation(db: Database, events: EventLog, policy: Policy, cid: str,
                             stage: str, actor: str, at: datetime | None = None) -> Decision:
    """Evaluate a stored consultation on the day `at` (default: now) and log the decision."""
    consultation = await records.get_consultation(db, cid)
    if consultation is None:
        raise KeyError(cid)
    doctor = await records.get_doctor(db, consultation.doctor_id)
    if doctor is None:
        raise KeyError(consultation.doctor_id)
    async with db.session() as session:
        booking = await session.get(Booking, cid)
        prior = (await session.get(PriorDiagnosis, booking.prior_diagnosis_id)
                 if booking is not None and booking.prior_diagnosis_id else None)
    decision = decide(policy, on=consultation_date(at or datetime.now(UTC), policy.timezone),
                      visit_type=consultation.visit_type, hospital_id=consultation.hospital_id,
                      specialty=consultation.specialty, doctor=doctor,
                      patient_id=consultation.patient_id, prior=prior)
    await events.append(cid, DECISION_EVENT, actor, {"stage": stage, **decision.to_dict()})
    return decision


def eligibility_gate(db: Database, events: EventLog, policy: Policy, clock: Clock) -> Gate:
    """The accept gate: the policy again, on the day the consultation starts."""

    async def gate(cid: str) -> str | None:
        decision = await check_consultation(db, events, policy, cid, "start", "system",
                                            clock.now())
        failure = decision.first_failure
        return None if failure is None else f"{failure.rule}: {failure.en}"

    return gate
