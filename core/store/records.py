"""Create and read the durable records; the consultation state moves by compare-and-set.

Plain functions over a Database, each in its own short transaction. Code that needs several
changes in one transaction uses `db.session()` and the models directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.store.db import Database
from core.store.models import Base, Consultation, Doctor, Guardian, Hospital, Patient, new_id

T = TypeVar("T", bound=Base)

# What a state change may set besides the state itself.
STATE_FIELDS = frozenset({"started_at", "ended_at", "end_reason", "node_id"})


async def _add(db: Database, row: T) -> T:
    async with db.session() as session, session.begin():
        session.add(row)
    return row


async def _get(db: Database, model: type[T], id_: str) -> T | None:
    async with db.session() as session:
        return await session.get(model, id_)


async def create_hospital(db: Database, *, name: str, city: str, is_physical: bool = True,
                          id: str | None = None) -> Hospital:
    return await _add(db, Hospital(id=id or new_id("h"), name=name, city=city,
                                   is_physical=is_physical))


async def get_hospital(db: Database, hospital_id: str) -> Hospital | None:
    return await _get(db, Hospital, hospital_id)


async def create_doctor(db: Database, *, hospital_id: str, name: str, national_id_masked: str,
                        licence_no: str, title: str,
                        clinical_practice_since: date | None = None,
                        online_practice_since: date | None = None,
                        training_passed_on: date | None = None,
                        specialties: Sequence[str] = (), whitelist_status: str = "active",
                        id: str | None = None) -> Doctor:
    return await _add(db, Doctor(
        id=id or new_id("d"), hospital_id=hospital_id, name=name,
        national_id_masked=national_id_masked, licence_no=licence_no, title=title,
        clinical_practice_since=clinical_practice_since,
        online_practice_since=online_practice_since, training_passed_on=training_passed_on,
        specialties=list(specialties), whitelist_status=whitelist_status))


async def get_doctor(db: Database, doctor_id: str) -> Doctor | None:
    return await _get(db, Doctor, doctor_id)


async def create_patient(db: Database, *, name: str, birth_date: date,
                         national_id_masked: str | None = None,
                         id: str | None = None) -> Patient:
    return await _add(db, Patient(id=id or new_id("p"), name=name, birth_date=birth_date,
                                  national_id_masked=national_id_masked))


async def get_patient(db: Database, patient_id: str) -> Patient | None:
    return await _get(db, Patient, patient_id)


async def create_guardian(db: Database, *, patient_id: str, name: str, relation: str,
                          national_id_masked: str | None = None,
                          id: str | None = None) -> Guardian:
    return await _add(db, Guardian(id=id or new_id("g"), patient_id=patient_id, name=name,
                                   relation=relation, national_id_masked=national_id_masked))


async def get_guardian(db: Database, guardian_id: str) -> Guardian | None:
    return await _get(db, Guardian, guardian_id)


async def create_consultation(db: Database, *, hospital_id: str, doctor_id: str,
                              patient_id: str, specialty: str, visit_type: str,
                              scheduled_at: datetime, guardian_id: str | None = None,
                              id: str | None = None) -> Consultation:
    return await _add(db, Consultation(
        id=id or new_id("c"), hospital_id=hospital_id, doctor_id=doctor_id,
        patient_id=patient_id, guardian_id=guardian_id, specialty=specialty,
        visit_type=visit_type, scheduled_at=scheduled_at))


async def get_consultation(db: Database, consultation_id: str) -> Consultation | None:
    return await _get(db, Consultation, consultation_id)


async def list_consultations(db: Database, state: str | None = None, *,
                             doctor_id: str | None = None, patient_id: str | None = None,
                             node_id: str | None = None, limit: int = 100,
                             offset: int = 0) -> list[Consultation]:
    """Consultations by scheduled time, filtered by whichever arguments are given."""
    query = select(Consultation)
    for column, value in ((Consultation.state, state), (Consultation.doctor_id, doctor_id),
                          (Consultation.patient_id, patient_id),
                          (Consultation.node_id, node_id)):
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(Consultation.scheduled_at, Consultation.id).limit(limit).offset(offset)
    async with db.session() as session:
        return list(await session.scalars(query))


async def set_consultation_state(db: Database, consultation_id: str, expected_state: str,
                                 new_state: str, **fields: Any) -> bool:
    """Move a consultation from `expected_state` to `new_state`; False if it was not in it.

    A compare-and-set UPDATE, so that two nodes (or two handlers) racing on one consultation
    cannot both win. `fields` may set started_at, ended_at, end_reason and node_id.
    """
    async with db.session() as session, session.begin():
        return await set_state_in(session, consultation_id, expected_state, new_state, **fields)


async def set_state_in(session: AsyncSession, consultation_id: str, expected_state: str,
                       new_state: str, **fields: Any) -> bool:
    """`set_consultation_state` inside the caller's transaction."""
    unknown = set(fields) - STATE_FIELDS
    if unknown:
        raise TypeError(f"set_consultation_state cannot set {sorted(unknown)}; "
                        f"only {sorted(STATE_FIELDS)}")
    result = await session.execute(
        update(Consultation)
        .where(Consultation.id == consultation_id, Consultation.state == expected_state)
        .values(state=new_state, **fields)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1  # type: ignore[attr-defined]
