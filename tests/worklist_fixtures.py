"""A doctor's day for the worklist tests: one doctor, consultations at given Beijing times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from core.auth import Role
from core.policy import load_policy
from core.policy.dates import SHANGHAI
from core.store import Consultation, Doctor, records
from server.demo import pilot_hospitals

from .node_fixtures import Node

SPECIALTY = "儿童生长发育"


@dataclass
class Slot:
    consultation: Consultation
    patient_name: str
    guardian_id: str

    @property
    def cid(self) -> str:
        return self.consultation.id


async def make_doctor(node: Node, name: str = "张医生") -> Doctor:
    hospital = (await pilot_hospitals(node.ctx.db, load_policy()))[0]
    return await records.create_doctor(
        node.ctx.db, hospital_id=hospital.id, name=name, national_id_masked="110***1",
        licence_no="110110000077777", title="attending", specialties=[SPECIALTY])


async def book_at(node: Node, doctor: Doctor, when: datetime, patient: str = "李小明",
                  birth: date = date(2021, 5, 4), visit: str = "first") -> Slot:
    """A consultation of `doctor` at `when`, booked straight into the records (no policy)."""
    p = await records.create_patient(node.ctx.db, name=patient, birth_date=birth)
    g = await records.create_guardian(node.ctx.db, patient_id=p.id, name="李华",
                                      relation="mother")
    c = await records.create_consultation(
        node.ctx.db, hospital_id=doctor.hospital_id, doctor_id=doctor.id, patient_id=p.id,
        guardian_id=g.id, specialty=SPECIALTY, visit_type=visit, scheduled_at=when)
    await node.ctx.events.append(c.id, "consultation.booked", "admin:test", {"visit_type": visit})
    return Slot(c, patient, g.id)


def today_at(minutes_ago: int) -> datetime:
    """A time today (Beijing) `minutes_ago` before now, never before today's first minute."""
    now = datetime.now(SHANGHAI)
    start = datetime.combine(now.date(), time(0, 1), SHANGHAI)
    return max(start, now - timedelta(minutes=minutes_ago))


def guardian_token(node: Node, slot: Slot) -> str:
    return node.token(Role.GUARDIAN, slot.guardian_id, slot.cid)
