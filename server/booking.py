"""Booking a consultation: the records must exist and fit together, and the policy must allow it.

Separate from the HTTP layer so the demo seed and the API book the same way, with the same
eligibility decision logged. A refused booking has no consultation chain yet, so its decision
goes to the system chain; an accepted one opens the consultation's chain with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.policy import Decision, Policy, consultation_date
from core.policy.check import DECISION_EVENT, decide
from core.store import SYSTEM_CHAIN, Consultation, Database, EventLog, records
from core.store.clinical import Booking, PriorDiagnosis
from core.store.models import VISIT_TYPES


@dataclass(frozen=True)
class BookingRequest:
    hospital_id: str
    specialty: str
    doctor_id: str
    patient_id: str
    guardian_id: str
    visit_type: str  # first | follow_up
    scheduled_at: datetime  # aware
    prior_diagnosis_id: str | None = None


class UnknownRecord(LookupError):
    """An id in the request names nothing (or something that does not belong with the rest)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class BookingRefused(Exception):
    """The policy refuses the booking; `decision` lists every rule and which failed."""

    def __init__(self, decision: Decision) -> None:
        failed = decision.first_failure
        super().__init__(f"{failed.rule}: {failed.en}" if failed else "refused")
        self.decision = decision


async def _prior(db: Database, prior_id: str | None) -> PriorDiagnosis | None:
    if prior_id is None:
        return None
    async with db.session() as session:
        prior = await session.get(PriorDiagnosis, prior_id)
    if prior is None:
        raise UnknownRecord("prior_diagnosis_id", f"no prior diagnosis {prior_id!r}")
    return prior


async def book(db: Database, events: EventLog, policy: Policy, req: BookingRequest,
               actor: str) -> tuple[Consultation, Decision]:
    """Check, decide, create; raises UnknownRecord or BookingRefused and then creates nothing."""
    if req.visit_type not in VISIT_TYPES:
        raise ValueError(f"visit_type must be one of {', '.join(VISIT_TYPES)}")
    if await records.get_hospital(db, req.hospital_id) is None:
        raise UnknownRecord("hospital_id", f"no hospital {req.hospital_id!r}")
    doctor = await records.get_doctor(db, req.doctor_id)
    if doctor is None:
        raise UnknownRecord("doctor_id", f"no doctor {req.doctor_id!r}")
    if await records.get_patient(db, req.patient_id) is None:
        raise UnknownRecord("patient_id", f"no patient {req.patient_id!r}")
    guardian = await records.get_guardian(db, req.guardian_id)
    if guardian is None:
        raise UnknownRecord("guardian_id", f"no guardian {req.guardian_id!r}")
    if guardian.patient_id != req.patient_id:
        raise UnknownRecord("guardian_id", "this guardian is not registered for this patient")
    prior = await _prior(db, req.prior_diagnosis_id)
    decision = decide(policy, on=consultation_date(req.scheduled_at, policy.timezone),
                      visit_type=req.visit_type, hospital_id=req.hospital_id,
                      specialty=req.specialty, doctor=doctor, patient_id=req.patient_id,
                      prior=prior if req.visit_type == "follow_up" else None)
    request = {"hospital_id": req.hospital_id, "doctor_id": req.doctor_id,
               "patient_id": req.patient_id, "specialty": req.specialty,
               "scheduled_at": req.scheduled_at.isoformat()}
    if not decision.allowed:
        await events.append(SYSTEM_CHAIN, DECISION_EVENT, actor,
                            {"stage": "booking", "request": request, **decision.to_dict()})
        raise BookingRefused(decision)
    consultation = await records.create_consultation(
        db, hospital_id=req.hospital_id, doctor_id=req.doctor_id, patient_id=req.patient_id,
        guardian_id=req.guardian_id, specialty=req.specialty, visit_type=req.visit_type,
        scheduled_at=req.scheduled_at)
    async with db.session() as session, session.begin():
        session.add(Booking(consultation_id=consultation.id, policy=policy.id, booked_by=actor,
                            prior_diagnosis_id=prior.id if prior else None))
    await events.append(consultation.id, "consultation.booked", actor,
                        {**request, "visit_type": req.visit_type,
                         "prior_diagnosis_id": prior.id if prior else None})
    await events.append(consultation.id, DECISION_EVENT, actor,
                        {"stage": "booking", **decision.to_dict()})
    return consultation, decision
