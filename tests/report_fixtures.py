"""A seeded month for the progress report: facts, seeded through the real lifecycle and the event
log, and the numbers expected of them, computed from the facts alone (never by the report's code).

The month is the current Beijing month: questions, complaints and adverse events count by when
their events happened, and the event log stamps events with the real time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from core.lifecycle import State
from core.policy import load_policy
from core.policy.dates import SHANGHAI
from core.referral import ReferralTarget, terminate
from core.store import records

from .node_fixtures import Node

ADULT = date(1990, 3, 1)
CHILD = date(2020, 8, 8)
GROWTH, NUTRITION, SKIN = "儿童生长发育", "儿童营养", "儿童皮肤疾病"


@dataclass(frozen=True)
class Fact:
    hospital: int  # index into the policy's pilot hospitals
    specialty: str
    visit: str  # first | follow_up
    month: int = 0  # 0: the seeded month; -1: the month before
    child: bool = True
    held: bool = False
    outcome: str | None = None  # ended | terminated | aborted | None (not over)
    reason: str | None = None  # termination reason
    attempts: tuple[str, ...] = ()  # identity attempt outcomes
    locked: bool = False
    presence: int | None = None  # guardian absences; None: presence not monitored
    absent_limit: bool = False
    recording: dict | None = None  # {"failed", "gaps", "verified": True | False | None}
    feedback: tuple[tuple[str, bool, bool], ...] = ()  # (kind, replied, closed)
    adverse: tuple[tuple[str, bool, bool], ...] = ()  # (severity, handled, closed)
    ids: dict = field(default_factory=dict, compare=False)


FACTS = (
    Fact(0, GROWTH, "first", held=True, outcome="ended", attempts=("verified",), presence=0,
         recording={"failed": False, "gaps": 0, "verified": True},
         feedback=(("question", True, True),)),
    Fact(0, GROWTH, "first", held=True, outcome="terminated", reason="guardian_absent",
         attempts=("no_match", "verified"), presence=2, absent_limit=True,
         recording={"failed": False, "gaps": 1, "verified": None},
         feedback=(("complaint", False, False),), adverse=(("severe", True, True),)),
    Fact(0, NUTRITION, "follow_up", held=True, outcome="terminated", reason="condition_changed",
         attempts=("verified",), presence=1,
         recording={"failed": True, "gaps": 0, "verified": None},
         adverse=(("mild", False, False),)),
    Fact(0, NUTRITION, "first", outcome="aborted",
         attempts=("no_match", "no_match", "no_match"), locked=True),
    Fact(1, SKIN, "first"),
    Fact(1, SKIN, "follow_up", child=False, held=True, outcome="ended", attempts=("verified",),
         recording={"failed": False, "gaps": 0, "verified": False},
         feedback=(("complaint", True, True), ("question", False, False))),
    Fact(1, SKIN, "first", held=True, presence=1,
         recording={"failed": False, "gaps": 0, "verified": None},
         adverse=(("moderate", True, False),)),
    Fact(1, NUTRITION, "first", outcome="terminated", reason="needs_in_person"),
    # The month before: its consultation is not in this month's numbers, but a complaint about
    # it made now is.
    Fact(0, GROWTH, "first", month=-1, held=True, outcome="ended", attempts=("verified",),
         feedback=(("complaint", False, True),)),
)


def this_month() -> tuple[int, int]:
    now = datetime.now(SHANGHAI)
    return now.year, now.month


def month_of(offset: int) -> tuple[int, int]:
    year, month = this_month()
    month += offset
    if month < 1:
        year, month = year - 1, month + 12
    return year, month


def month_text(offset: int = 0) -> str:
    year, month = month_of(offset)
    return f"{year:04d}-{month:02d}"


async def seed(node: Node, facts: tuple[Fact, ...] = FACTS) -> dict[int, str]:
    """Create the consultations and their histories; returns hospital index -> hospital id."""
    from server.demo import pilot_hospitals

    ctx = node.ctx
    hospitals = await pilot_hospitals(ctx.db, load_policy())
    doctors = {}
    for i, h in enumerate(hospitals):
        doctors[i] = await records.create_doctor(
            ctx.db, hospital_id=h.id, name=f"医生{i}", national_id_masked="110***1",
            licence_no=f"11011000000{i}", title="attending", specialties=[GROWTH, NUTRITION, SKIN])
    refs = Counter()
    for n, fact in enumerate(facts):
        year, month = month_of(fact.month)
        when = datetime(year, month, 1 + n * 2, 10, 0, tzinfo=SHANGHAI)
        patient = await records.create_patient(ctx.db, name=f"患者{n}",
                                               birth_date=CHILD if fact.child else ADULT)
        guardian = await records.create_guardian(ctx.db, patient_id=patient.id, name=f"家长{n}",
                                                 relation="mother")
        c = await records.create_consultation(
            ctx.db, hospital_id=hospitals[fact.hospital].id, doctor_id=doctors[fact.hospital].id,
            patient_id=patient.id, guardian_id=guardian.id, specialty=fact.specialty,
            visit_type=fact.visit, scheduled_at=when)
        fact.ids["cid"] = cid = c.id
        await ctx.events.append(cid, "consultation.booked", "admin:seed",
                                {"visit_type": fact.visit})
        await _history(node, cid, fact)
        for kind, replied, closed in fact.feedback:
            refs["Q"] += 1
            ref = f"Q{refs['Q']}"
            await ctx.events.append(cid, "feedback.opened", "guardian:seed",
                                    {"ref": ref, "kind": kind, "category": "service"})
            if replied:
                await ctx.events.append(cid, "feedback.replied", "admin:seed",
                                        {"ref": ref, "by": "admin:seed"})
            if closed:
                await ctx.events.append(cid, "feedback.closed", "admin:seed",
                                        {"ref": ref, "by": "admin:seed"})
        for severity, handled, closed in fact.adverse:
            refs["A"] += 1
            ref = f"A{refs['A']}"
            await ctx.events.append(cid, "adverse_event.filed", "doctor:seed",
                                    {"ref": ref, "severity": severity, "by": "doctor:seed"})
            if handled:
                await ctx.events.append(cid, "adverse_event.handled", "admin:seed",
                                        {"ref": ref, "by": "admin:seed", "action": "called"})
            if closed:
                await ctx.events.append(cid, "adverse_event.closed", "admin:seed",
                                        {"ref": ref, "by": "admin:seed"})
    return {i: h.id for i, h in enumerate(hospitals)}


async def _history(node: Node, cid: str, fact: Fact) -> None:
    """The consultation's life through the real lifecycle; checks and recording as events."""
    ctx = node.ctx
    append = ctx.events.append
    if fact.held or fact.outcome == "terminated":
        await ctx.lifecycle.transition(cid, State.WAITING, "guardian:seed")
        await ctx.lifecycle.transition(cid, State.VERIFYING, "doctor:seed")
    for i, outcome in enumerate(fact.attempts, 1):
        await append(cid, "identity.attempt", "system", {"attempt": i, "outcome": outcome})
    if fact.locked:
        await append(cid, "identity.locked", "system", {"failures": len(fact.attempts)})
    if fact.held:
        await ctx.lifecycle.transition(cid, State.ACTIVE, "doctor:seed", "accepted")
    if fact.presence is not None:
        await append(cid, "guardian.presence.started", "system", {})
        await append(cid, "guardian.presence", "system", {"state": "present"})
        for _ in range(fact.presence):
            await append(cid, "guardian.presence", "system", {"state": "absent"})
            await append(cid, "guardian.presence", "system", {"state": "present"})
        if fact.absent_limit:
            await append(cid, "guardian.absent_limit", "system", {"action": "ask_doctor"})
    if fact.recording is not None:
        rec = fact.recording
        await append(cid, "recording.started", "system:recorder", {})
        await append(cid, "recording.segment", "system:recorder", {"seq": 1})
        for _ in range(rec["gaps"]):
            await append(cid, "recording.gap", "system:recorder", {"seconds": 2.0})
        if rec["failed"]:
            await append(cid, "recording.failed", "system:recorder", {"error": "disk full"})
        if rec["verified"] is not None:
            await append(cid, "recording.verified", "auditor:seed",
                         {"ok": rec["verified"], "checked": 1})
    if fact.outcome == "terminated":
        await terminate(ctx, cid, "doctor:seed", fact.reason,
                        ReferralTarget("首都医科大学附属北京儿童医院", "儿科", "routine"))
    elif fact.outcome is not None:
        await ctx.lifecycle.transition(cid, State(fact.outcome), "doctor:seed", fact.outcome)


# -- what the report must say, from the facts alone -----------------------------------------------

def expected(facts: tuple[Fact, ...], hospitals: dict[int, str], offset: int = 0,
             ) -> dict[tuple[str, str], Counter]:
    """(hospital id, specialty) -> measure key -> count, for the month `offset` from this one.

    Feedback and adverse events happened now: they count only in this month's report.
    """
    groups: dict[tuple[str, str], Counter] = {}
    for f in facts:
        key = (hospitals[f.hospital], f.specialty)
        exp = Counter()
        if f.month == offset:
            v = f.visit
            exp[f"{v}.booked"] += 1
            exp[f"{v}.held"] += f.held
            if f.outcome:
                exp[f"{v}.{f.outcome}"] += 1
            if f.outcome == "terminated":
                exp[f"{v}.terminated_reason.{f.reason}"] += 1
                exp[f"{v}.referred"] += 1
            if f.attempts:
                exp["identity.checked"] += 1
                exp["identity.passed"] += "verified" in f.attempts
                exp["identity.attempts"] += len(f.attempts)
                exp["identity.attempts_failed"] += sum(a != "verified" for a in f.attempts)
                exp["identity.locked"] += f.locked
            if f.child:
                exp["pediatric.booked"] += 1
                exp["pediatric.held"] += f.held
            if f.presence is not None:
                exp["pediatric.monitored"] += 1
                exp["pediatric.absences"] += f.presence
                exp["pediatric.absent_limit"] += f.absent_limit
                if f.presence:
                    exp["pediatric.with_absences"] += 1
                    exp[f"pediatric.outcome.{f.outcome or 'unfinished'}"] += 1
            if f.recording is not None:
                r = f.recording
                exp["recording.recorded"] += 1
                exp["recording.failed"] += r["failed"]
                exp["recording.with_gaps"] += r["gaps"] > 0
                exp["recording.complete"] += (not r["failed"]) and f.outcome is not None
                exp["recording.verified"] += r["verified"] is True
                exp["recording.verification_failed"] += r["verified"] is False
        if offset == 0:
            for kind, replied, closed in f.feedback:
                section = "complaints" if kind == "complaint" else "questions"
                exp[f"{section}.opened"] += 1
                exp[f"{section}.replied"] += replied
                exp[f"{section}.closed"] += closed
                exp[f"{section}.open_at_end"] += not closed
            for severity, handled, closed in f.adverse:
                exp["adverse_events.filed"] += 1
                exp[f"adverse_events.{severity}"] += 1
                exp["adverse_events.handled"] += handled
                exp["adverse_events.closed"] += closed
                exp["adverse_events.open_at_end"] += not closed
        if +exp:
            groups.setdefault(key, Counter()).update(exp)
    return {k: +v for k, v in groups.items()}


def month_days(offset: int = 0) -> tuple[date, date]:
    year, month = month_of(offset)
    first = date(year, month, 1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first, nxt - timedelta(days=1)
