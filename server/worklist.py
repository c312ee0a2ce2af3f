"""The doctor's day: today's consultations with the least patient data and their live status, and
where a waiting guardian stands in that doctor's queue.

Live status comes from the shared live state as the ops page reads it (who is connected, the
guardian on camera), plus consent from the database (it is not live state). "Today" is the
Beijing calendar date.

The queue: a consultation is ahead of yours when the doctor is with it now (verifying or active),
or when its guardian is connected and it was scheduled before yours; one whose guardian has not
come is not ahead (the doctor takes whoever is there). The wait is the larger of the time until
your slot and the time the consultations ahead will take, at this doctor's average length of a
consultation over the last 30 days (`DEFAULT_VISIT_S` until there is one).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from core.consent import CURRENT_VERSION
from core.live import PARTICIPANTS, LiveState, LiveStateUnavailable
from core.policy.dates import SHANGHAI, consultation_date
from core.store import Consultation, Database, Patient
from core.store.clinical import Consent
from identity.guardian.presence_policy import is_under
from signaling.protocol import ParticipantStatus

FINAL = frozenset({"ended", "terminated", "aborted"})
WITH_DOCTOR = frozenset({"verifying", "active"})
DEFAULT_VISIT_S = 15 * 60
VISIT_BOUNDS_S = (5 * 60, 60 * 60)  # an average outside this is not a plausible visit length
HISTORY = timedelta(days=30)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), SHANGHAI)
    return start, start + timedelta(days=1)


def masked_name(name: str) -> str:
    """Enough for the doctor to call the right family, no more: 李*明, 王*, Wang X."""
    name = " ".join(name.split())
    if not name:
        return "—"
    if unicodedata.east_asian_width(name[0]) in ("W", "F"):
        if len(name) <= 2:
            return name[0] + "*" * (len(name) - 1)
        return name[0] + "*" * (len(name) - 2) + name[-1]
    surname, *given = name.split(" ")
    return " ".join([surname, *(g[0] + "." for g in given)]) if given else surname[0] + "."


def age(birth: date, on: date) -> dict[str, int]:
    """Whole years; whole months as well under one year (a baby's age is said in months)."""
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if years >= 1:
        return {"years": years}
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    return {"years": 0, "months": max(0, months)}


def live_status(state: str, live: dict[str, Any] | None, consent: bool) -> dict[str, Any]:
    """What the worklist shows of a consultation right now."""
    participants = (live or {}).get(PARTICIPANTS, {})
    guardian = (participants.get("guardian") or {}).get("status")
    doctor = (participants.get("doctor") or {}).get("status")
    if live is not None and live.get("state"):
        state = live["state"]
    if guardian == ParticipantStatus.CONNECTED:
        where = "in_call" if state == "active" else "waiting"
    elif guardian in (ParticipantStatus.RECONNECTING, ParticipantStatus.LEFT):
        where = guardian
    else:
        where = "not_joined"
    return {"state": state, "guardian": where,
            "doctor_joined": doctor == ParticipantStatus.CONNECTED,
            "consent": consent, "on_camera": (live or {}).get("guardian")}


def _guardian_here(live: dict[str, Any] | None) -> bool:
    status = ((live or {}).get(PARTICIPANTS, {}).get("guardian") or {}).get("status")
    return status in (ParticipantStatus.CONNECTED, ParticipantStatus.RECONNECTING)


@dataclass(frozen=True)
class Day:
    """One doctor's consultations on one Beijing date, with what the live state says of each."""

    day: date
    consultations: list[Consultation]
    live: dict[str, dict[str, Any] | None]
    live_ok: bool


async def doctor_day(db: Database, live: LiveState, doctor_id: str, day: date) -> Day:
    start, end = day_bounds(day)
    async with db.session() as session:
        rows = list(await session.scalars(
            select(Consultation).where(Consultation.doctor_id == doctor_id,
                                       Consultation.scheduled_at >= start,
                                       Consultation.scheduled_at < end)
            .order_by(Consultation.scheduled_at, Consultation.id)))
    found: dict[str, dict[str, Any] | None] = {}
    ok = True
    for c in rows:
        if c.state in FINAL:
            continue
        try:
            found[c.id] = await live.consultation(c.id)
        except LiveStateUnavailable:
            ok = False
            break
    return Day(day, rows, found, ok)


async def worklist(db: Database, today: Day, pediatric_age: int) -> list[dict[str, Any]]:
    """Today's consultations as the doctor's list shows them (least patient data)."""
    ids = [c.id for c in today.consultations]
    async with db.session() as session:
        patients = {p.id: p for p in await session.scalars(
            select(Patient).where(Patient.id.in_({c.patient_id for c in today.consultations})))}
        consented = set(await session.scalars(
            select(Consent.consultation_id).where(Consent.consultation_id.in_(ids),
                                                  Consent.version == CURRENT_VERSION)))
    entries = []
    for c in today.consultations:
        patient = patients.get(c.patient_id)
        on = consultation_date(c.scheduled_at)
        entries.append({
            "consultation_id": c.id,
            "scheduled_at": c.scheduled_at.isoformat(),
            "time": c.scheduled_at.astimezone(SHANGHAI).strftime("%H:%M"),
            "patient": {"name": masked_name(patient.name) if patient else "—",
                        "age": age(patient.birth_date, on) if patient else None},
            "visit_type": c.visit_type,
            "specialty": c.specialty,
            "pediatric": bool(patient and is_under(patient.birth_date, pediatric_age, on)),
            "joinable": c.state not in FINAL,
            **live_status(c.state, today.live.get(c.id), c.id in consented),
        })
    return entries


def average_visit_s(lengths: list[float]) -> float:
    plausible = [s for s in lengths if VISIT_BOUNDS_S[0] <= s <= VISIT_BOUNDS_S[1]]
    return sum(plausible) / len(plausible) if plausible else DEFAULT_VISIT_S


async def recent_visit_lengths(db: Database, doctor_id: str, now: datetime) -> list[float]:
    async with db.session() as session:
        rows = await session.execute(
            select(Consultation.started_at, Consultation.ended_at).where(
                Consultation.doctor_id == doctor_id, Consultation.started_at.is_not(None),
                Consultation.ended_at >= now - HISTORY)
            .order_by(Consultation.ended_at.desc()).limit(50))
        return [(ended - started).total_seconds() for started, ended in rows.all()]


def queue_place(mine: Consultation, today: Day, now: datetime,
                visit_s: float) -> dict[str, Any]:
    """Where `mine` stands in its doctor's queue, and roughly how long until the doctor comes."""
    if mine.state in FINAL:
        return {"state": mine.state, "position": None, "ahead": 0, "wait_min": None}
    if mine.state in WITH_DOCTOR:
        return {"state": mine.state, "position": 0, "ahead": 0, "wait_min": 0}
    mine_key = (mine.scheduled_at, mine.id)
    ahead = [c for c in today.consultations if c.id != mine.id and c.state not in FINAL and (
        c.state in WITH_DOCTOR
        or (_guardian_here(today.live.get(c.id)) and (c.scheduled_at, c.id) < mine_key))]
    busy_s = 0.0
    for c in ahead:
        elapsed = (now - c.started_at).total_seconds() if c.started_at else 0.0
        busy_s += min(visit_s, max(60.0, visit_s - elapsed))
    until_slot = (mine.scheduled_at - now).total_seconds()
    wait_s = max(busy_s, until_slot, 0.0)
    return {"state": mine.state, "position": len(ahead) + 1, "ahead": len(ahead),
            "wait_min": math.ceil(wait_s / 60), "visit_min": round(visit_s / 60)}
