"""The pilot's periodic progress report (定期向我委报告试点工作进展), computed from the event log.

Per hospital and specialty, over a range of Beijing calendar dates:
- consultations *scheduled* in the range (the regulator export's basis, so the two reconcile),
  by visit type: booked, held (went active), how they ended, terminated by reason, referred;
  the doctor's identity checks, pediatric calls with guardian absences and how those ended, and
  recordings: each from the consultation's own events, summarised by the export's helpers;
- questions, complaints and adverse events by *when they happened*: opened (filed) and closed
  within the range, and still open at its end, whatever the consultation's own date.

The shape of the counts is fixed (`empty()`), so JSON, CSV and the printed page always carry
the same measures in the same order, zeros included; their labels are in report_labels.py.
"""

from __future__ import annotations

import calendar
import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from core.policy.dates import SHANGHAI, consultation_date
from core.store import Consultation, Database, Event, Hospital, Patient
from core.store.clinical import TERMINATION_REASONS
from core.store.models import VISIT_TYPES
from identity.guardian.presence_policy import is_under
from server.export import MAX_DAYS, _guardian, _recording, _verification

FINAL = ("ended", "terminated", "aborted")
OUTCOMES = (*FINAL, "unfinished")
SEVERITIES = ("mild", "moderate", "severe")
FEEDBACK_EVENTS = ("feedback.opened", "feedback.replied", "feedback.closed")
ADVERSE_EVENTS = ("adverse_event.filed", "adverse_event.handled", "adverse_event.closed")
UNLINKED = ("", "")  # items whose event is on no consultation's chain
_CHUNK = 500  # ids per IN (...) query

Counts = dict[str, Any]  # nested dicts of ints, always the shape of empty()


def empty() -> Counts:
    def visits() -> Counts:
        return {"booked": 0, "held": 0, "ended": 0, "terminated": 0, "aborted": 0,
                "referred": 0, "terminated_reason": dict.fromkeys(TERMINATION_REASONS, 0)}

    def items() -> Counts:
        return {"opened": 0, "replied": 0, "closed": 0, "open_at_end": 0}

    return {
        "first": visits(),
        "follow_up": visits(),
        "identity": {"checked": 0, "passed": 0, "attempts": 0, "attempts_failed": 0,
                     "locked": 0},
        "pediatric": {"booked": 0, "held": 0, "monitored": 0, "with_absences": 0,
                      "absences": 0, "absent_limit": 0,
                      "outcome": dict.fromkeys(OUTCOMES, 0)},
        "recording": {"recorded": 0, "complete": 0, "with_gaps": 0, "failed": 0,
                      "verified": 0, "verification_failed": 0},
        "questions": items(),
        "complaints": items(),
        "adverse_events": {"filed": 0, **dict.fromkeys(SEVERITIES, 0), "handled": 0,
                           "closed": 0, "open_at_end": 0},
    }


def add(into: Counts, other: Counts) -> None:
    for key, value in other.items():
        if isinstance(value, dict):
            add(into[key], value)
        else:
            into[key] += value


def flatten(counts: Counts, prefix: str = "") -> list[tuple[str, int]]:
    """("first.terminated_reason.other", 0), ... in the fixed order of empty()."""
    out: list[tuple[str, int]] = []
    for key, value in counts.items():
        if isinstance(value, dict):
            out += flatten(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


# -- the period --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    """Beijing calendar dates, both inclusive."""

    first: date
    last: date
    month: str | None = None

    @classmethod
    def of_month(cls, month: str) -> Period:
        year, number = int(month[:4]), int(month[5:7])
        days = calendar.monthrange(year, number)[1]
        return cls(date(year, number, 1), date(year, number, days), month)

    def check(self) -> str | None:
        """Why this range cannot be reported, or None."""
        if self.last < self.first:
            return "'to' is before 'from'"
        if (self.last - self.first).days >= MAX_DAYS:
            return f"at most {MAX_DAYS} days per report"
        return None

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), SHANGHAI)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), SHANGHAI)

    def holds(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat(),
                "month": self.month, "timezone": "Asia/Shanghai"}


# -- one consultation's part -----------------------------------------------------------------

def consultation_counts(c: Consultation, events: list[Event], pediatric: bool) -> Counts:
    """What one consultation scheduled in the period adds to its group."""
    counts = empty()
    states = [ev for ev in events if ev.kind == "state"]
    held = any(ev.data.get("to") == "active" for ev in states)
    last = states[-1].data.get("to") if states else "scheduled"
    outcome = last if last in FINAL else "unfinished"
    if c.visit_type in VISIT_TYPES:
        visit = counts[c.visit_type]
        visit["booked"] = 1
        visit["held"] = int(held)
        if outcome in FINAL:
            visit[outcome] = 1
        if outcome == "terminated":
            data = states[-1].data
            reason = (data.get("termination") or {}).get("reason")
            visit["terminated_reason"]["other" if reason not in TERMINATION_REASONS
                                       else reason] = 1
            visit["referred"] = int(bool(data.get("referral")))
    verification = _verification(events)
    if verification is not None:
        counts["identity"].update(
            checked=1, passed=int(verification["verified"]),
            attempts=verification["attempts"], attempts_failed=verification["failed_attempts"],
            locked=int(verification["locked"]))
    guardian = _guardian(events)
    if pediatric or guardian is not None:
        child = counts["pediatric"]
        child["booked"], child["held"] = 1, int(held)
        if guardian is not None:
            child["monitored"] = int(guardian["monitored"])
            child["absences"] = guardian["absences"]
            child["absent_limit"] = int(guardian["absent_limit_reached"])
            if guardian["absences"]:
                child["with_absences"] = 1
                child["outcome"][outcome] = 1
    recording = _recording(events)
    if recording is not None:
        checked = recording["last_verification"]
        counts["recording"].update(
            recorded=1, failed=int(recording["failed"]), with_gaps=int(recording["gaps"] > 0),
            complete=int(not recording["failed"] and outcome in FINAL
                         and recording["segments"] > 0),
            verified=int(checked is not None and checked["ok"] is True),
            verification_failed=int(checked is not None and checked["ok"] is False))
    return counts


# -- questions, complaints and adverse events (by when they happened) --------------------------

@dataclass
class Item:
    section: str  # questions | complaints | adverse_events
    chain: str
    opened_at: datetime
    severity: str | None = None
    closed_at: datetime | None = None
    touched: bool = False  # replied to (feedback) or handled (adverse event) within the period


def tracked_items(events: Iterable[Event], period: Period) -> list[Item]:
    """Each question, complaint and adverse event up to the period's end, with its history."""
    items: dict[tuple[str, str], Item] = {}
    for ev in events:
        family, _, step = ev.kind.partition(".")
        key = (family, str(ev.data.get("ref")))
        if step in ("opened", "filed"):
            if family == "feedback":
                section = "complaints" if ev.data.get("kind") == "complaint" else "questions"
            else:
                section = "adverse_events"
            items.setdefault(key, Item(section, ev.chain, ev.at, ev.data.get("severity")))
        elif key in items and step in ("replied", "handled"):
            items[key].touched |= period.holds(ev.at)
        elif key in items and step == "closed" and items[key].closed_at is None:
            items[key].closed_at = ev.at
    return list(items.values())


def item_counts(item: Item, period: Period) -> Counts:
    counts = empty()
    row = counts[item.section]
    if period.holds(item.opened_at):
        row["filed" if item.section == "adverse_events" else "opened"] = 1
        if item.severity in SEVERITIES:
            row[item.severity] = 1
    row["handled" if item.section == "adverse_events" else "replied"] = int(item.touched)
    row["closed"] = int(item.closed_at is not None and period.holds(item.closed_at))
    row["open_at_end"] = int(item.opened_at < period.end
                             and (item.closed_at is None or item.closed_at >= period.end))
    return counts


# -- the whole report ----------------------------------------------------------------------------

async def _events_by_chain(db: Database, chains: list[str]) -> dict[str, list[Event]]:
    found: dict[str, list[Event]] = {cid: [] for cid in chains}
    async with db.session() as session:
        for i in range(0, len(chains), _CHUNK):
            rows = await session.scalars(
                select(Event).where(Event.chain.in_(chains[i:i + _CHUNK]))
                .order_by(Event.chain, Event.seq))
            for ev in rows:
                found[ev.chain].append(ev)
    return found


async def _by_id(db: Database, model: Any, ids: set[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    wanted = sorted(ids)
    async with db.session() as session:
        for i in range(0, len(wanted), _CHUNK):
            for row in await session.scalars(
                    select(model).where(model.id.in_(wanted[i:i + _CHUNK]))):
                found[row.id] = row
    return found


async def build(db: Database, period: Period, pediatric_age: int,
                hospital_id: str | None = None) -> dict[str, Any]:
    """The report as JSON-ready data (see the module docstring for what each number counts)."""
    async with db.session() as session:
        query = select(Consultation).where(Consultation.scheduled_at >= period.start,
                                           Consultation.scheduled_at < period.end)
        if hospital_id is not None:
            query = query.where(Consultation.hospital_id == hospital_id)
        scheduled = list(await session.scalars(query.order_by(Consultation.scheduled_at)))
        feedback = list(await session.scalars(
            select(Event).where(Event.kind.in_(FEEDBACK_EVENTS + ADVERSE_EVENTS),
                                Event.at < period.end)
            .order_by(Event.at, Event.id)))
    items = tracked_items(feedback, period)
    consultations = {c.id: c for c in scheduled}
    consultations.update(await _by_id(db, Consultation, {i.chain for i in items}
                                      - set(consultations)))
    events = await _events_by_chain(db, [c.id for c in scheduled])
    patients = await _by_id(db, Patient, {c.patient_id for c in scheduled})
    groups: dict[tuple[str, str], Counts] = {}

    def group(key: tuple[str, str]) -> Counts:
        return groups.setdefault(key, empty())

    for c in scheduled:
        patient = patients.get(c.patient_id)
        pediatric = patient is not None and is_under(
            patient.birth_date, pediatric_age, consultation_date(c.scheduled_at))
        add(group((c.hospital_id, c.specialty)),
            consultation_counts(c, events[c.id], pediatric))
    for item in items:
        c = consultations.get(item.chain)
        if c is None and hospital_id is not None:
            continue
        if c is not None and hospital_id is not None and c.hospital_id != hospital_id:
            continue
        counts = item_counts(item, period)
        if any(value for _, value in flatten(counts)):  # nothing of it in or at the period
            add(group((c.hospital_id, c.specialty) if c is not None else UNLINKED), counts)
    hospitals = await _by_id(db, Hospital, {h for h, _ in groups if h})
    return _assemble(period, groups, hospitals, len(scheduled))


def _assemble(period: Period, groups: dict[tuple[str, str], Counts],
              hospitals: dict[str, Hospital], scheduled: int) -> dict[str, Any]:
    total = empty()
    out = []
    for hid in sorted({h for h, _ in groups}, key=lambda h: (h == "", h)):
        subtotal = empty()
        specialties = []
        for (h, specialty), counts in sorted(groups.items()):
            if h != hid:
                continue
            add(subtotal, counts)
            specialties.append({"specialty": specialty or None, "counts": counts})
        add(total, subtotal)
        name = hospitals[hid].name if hid in hospitals else None
        out.append({"id": hid or None, "name": name, "specialties": specialties,
                    "total": subtotal})
    return {"report": "pilot_progress", "period": period.to_dict(),
            "consultations": scheduled, "hospitals": out, "total": total}


CSV_HEAD = ("scope", "hospital_id", "hospital", "specialty")


def to_csv(report: dict[str, Any]) -> str:
    """One row per hospital and specialty, one per hospital (its total) and one for all."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    keys = [key for key, _ in flatten(empty())]
    writer.writerow([*CSV_HEAD, *keys])

    def row(scope: str, hospital: dict[str, Any] | None, specialty: str | None,
            counts: Counts) -> None:
        values = dict(flatten(counts))
        writer.writerow([scope, (hospital or {}).get("id") or "",
                         (hospital or {}).get("name") or "", specialty or "",
                         *(values[k] for k in keys)])

    for hospital in report["hospitals"]:
        for part in hospital["specialties"]:
            row("specialty", hospital, part["specialty"], part["counts"])
        row("hospital", hospital, None, hospital["total"])
    row("all", None, None, report["total"])
    return buffer.getvalue()
