"""The regulator's export (管理办法 §24, Tianjin §26): consultations in a date range, as JSON lines.

Least data: no names, no national ids, no clinical notes; the doctor by licence number, the
outcome of each check, where a terminated consultation referred the patient. The outcomes of
identity verification, guardian presence and recording are summarised from the consultation's
event log (null where that check did not run); so are questions, complaints and adverse events,
as counts by kind and severity, never their text. Each export is itself an event on the system
chain.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, time, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from core.auth import CLAIMS_KEY, Role
from core.context import CONTEXT_KEY
from core.endpoint import endpoint
from core.fields import Day
from core.policy.dates import SHANGHAI
from core.store import SYSTEM_CHAIN, Consultation, Doctor, Event, Hospital
from core.store.clinical import Consent, Referral

MAX_DAYS = 366

log = logging.getLogger(__name__)


class ExportRange(BaseModel):
    """Beijing dates, both included: at most 366 days (MAX_DAYS)."""

    model_config = ConfigDict(extra="forbid")
    first: Day = Field(alias="from")
    last: Day = Field(alias="to")

    @model_validator(mode="after")
    def _bounded(self) -> ExportRange:
        if self.last < self.first:
            raise ValueError("'to' is before 'from'")
        if (self.last - self.first).days >= MAX_DAYS:
            raise ValueError(f"at most {MAX_DAYS} days per export")
        return self


def _of(events: list[Event], *kinds: str) -> list[Event]:
    return [ev for ev in events if ev.kind in kinds]


def _verification(events: list[Event]) -> dict[str, Any] | None:
    """The doctor's identity: verified before accepting, then held (re-checks) or not."""
    attempts = _of(events, "identity.attempt")
    rechecks = _of(events, "identity.recheck")
    if not attempts and not rechecks:
        return None  # identity checks were off for this consultation
    passed = next((ev for ev in attempts if ev.data.get("outcome") == "verified"), None)
    return {
        "verified": passed is not None,
        "distance": passed.data.get("distance") if passed else None,
        "attempts": len(attempts),
        "failed_attempts": sum(ev.data.get("outcome") != "verified" for ev in attempts),
        "failures": sorted({str(ev.data.get("outcome")) for ev in attempts} - {"verified"}),
        "locked": bool(_of(events, "identity.locked")),
        "rechecks": len(rechecks),
        "recheck_failures": sum(not ev.data.get("ok") for ev in rechecks),
        "alerts": len(_of(events, "identity.alert")),
    }


def _guardian(events: list[Event]) -> dict[str, Any] | None:
    """The guardian on camera (pediatric consultations): seen, absences, how it ended."""
    changes = _of(events, "guardian.presence")
    if not changes and not _of(events, "guardian.presence.started",
                               "guardian.presence.unavailable"):
        return None  # not pediatric, or presence checks were off
    states = [ev.data.get("state") for ev in changes]
    return {
        "monitored": not _of(events, "guardian.presence.unavailable"),
        "seen": "present" in states,
        "absences": states.count("absent"),
        "absent_limit_reached": bool(_of(events, "guardian.absent_limit")),
        "last": states[-1] if states else None,
    }


def _recording(events: list[Event]) -> dict[str, Any] | None:
    """Recorded or not, failures and gaps, and the latest integrity check of the files."""
    if not _of(events, "recording.started"):
        return None
    checks = _of(events, "recording.verified")
    last = checks[-1] if checks else None
    return {
        "segments": len(_of(events, "recording.segment", "recording.recovered")),
        "failed": bool(_of(events, "recording.failed")),
        "gaps": len(_of(events, "recording.gap")),
        "purged_segments": len(_of(events, "recording.purged")),
        "last_verification": None if last is None else {
            "ok": last.data.get("ok"), "checked": last.data.get("checked"),
            "at": last.at.isoformat()},
    }


def _feedback(events: list[Event]) -> dict[str, int]:
    """Questions and complaints: how many of each were opened and how many closed (no text)."""
    opened = [ev.data.get("kind") for ev in _of(events, "feedback.opened")]
    return {"questions": opened.count("question"), "complaints": opened.count("complaint"),
            "replied": len({ev.data.get("ref") for ev in _of(events, "feedback.replied")}),
            "closed": len(_of(events, "feedback.closed"))}


def _adverse(events: list[Event]) -> dict[str, Any]:
    """Adverse events by severity, and how many were handled and closed (no description)."""
    filed = [ev.data.get("severity") for ev in _of(events, "adverse_event.filed")]
    return {"filed": len(filed),
            "severity": {level: filed.count(level) for level in ("mild", "moderate", "severe")},
            "handled": len({ev.data.get("ref") for ev in _of(events, "adverse_event.handled")}),
            "closed": len(_of(events, "adverse_event.closed"))}


def _eligibility(events: list[Event]) -> dict[str, Any] | None:
    for ev in reversed(events):
        if ev.kind == "eligibility.decision":
            return {"stage": ev.data.get("stage"), "allowed": ev.data.get("allowed"),
                    "failed": ev.data.get("failed"), "policy": ev.data.get("policy")}
    return None


def line(c: Consultation, hospital: Hospital | None, doctor: Doctor | None,
         referral: Referral | None, consent: Consent | None, events: list[Event]) -> dict:
    return {
        "consultation_id": c.id,
        "hospital": {"id": c.hospital_id, "name": hospital.name if hospital else None},
        "specialty": c.specialty,
        "doctor_licence": doctor.licence_no if doctor else None,
        "visit_type": c.visit_type,
        "scheduled_at": c.scheduled_at.isoformat(),
        "started_at": c.started_at.isoformat() if c.started_at else None,
        "ended_at": c.ended_at.isoformat() if c.ended_at else None,
        "state": c.state,
        "eligibility": _eligibility(events),
        "consent": {"version": consent.version, "at": consent.accepted_at.isoformat()}
        if consent else None,
        "termination_reason": referral.reason if referral else None,
        "referral_target": {"hospital": referral.hospital, "department": referral.department,
                            "urgency": referral.urgency} if referral else None,
        "verification": _verification(events),
        "guardian": _guardian(events),
        "recording_integrity": _recording(events),
        "feedback": _feedback(events),  # issue 15: counts only, the texts stay in the hospital
        "adverse_events": _adverse(events),
        "event_count": len(events),
    }


@endpoint(Role.ADMIN, Role.REGULATOR, query=ExportRange)
async def consultations(request: web.Request, query: ExportRange) -> web.StreamResponse:
    """GET /api/export/consultations?from=YYYY-MM-DD&to=YYYY-MM-DD (Beijing dates, inclusive).

    Registered without HEAD (server.booking_api): a HEAD would run and log the export."""
    first, last = query.first, query.last
    ctx = request.app[CONTEXT_KEY]
    claims = request[CLAIMS_KEY]
    start = datetime.combine(first, time(), SHANGHAI)
    end = datetime.combine(last + timedelta(days=1), time(), SHANGHAI)
    async with ctx.db.session() as session:
        rows = list(await session.scalars(
            select(Consultation).where(Consultation.scheduled_at >= start,
                                       Consultation.scheduled_at < end)
            .order_by(Consultation.scheduled_at, Consultation.id)))
        ids = [c.id for c in rows]
        hospitals = {h.id: h for h in await session.scalars(select(Hospital))}
        doctors = {d.id: d for d in await session.scalars(
            select(Doctor).where(Doctor.id.in_({c.doctor_id for c in rows})))}
        referrals = {r.consultation_id: r for r in await session.scalars(
            select(Referral).where(Referral.consultation_id.in_(ids)))}
        consents = {k.consultation_id: k for k in await session.scalars(
            select(Consent).where(Consent.consultation_id.in_(ids)))}
    await ctx.events.append(SYSTEM_CHAIN, "export.consultations",
                            f"{claims.role}:{claims.subject}",
                            {"from": first.isoformat(), "to": last.isoformat(),
                             "count": len(rows)})
    response = web.StreamResponse(headers={
        "Content-Type": "application/x-ndjson; charset=utf-8", "Cache-Control": "no-store"})
    try:
        await response.prepare(request)
        for c in rows:
            events = await ctx.events.events(c.id)
            record = line(c, hospitals.get(c.hospital_id), doctors.get(c.doctor_id),
                          referrals.get(c.id), consents.get(c.id), events)
            await response.write((json.dumps(record, ensure_ascii=False) + "\n").encode())
        await response.write_eof()
    except ConnectionResetError:  # (aiohttp's ClientConnectionResetError is one)
        log.info("download aborted by the client: export %s..%s for %s:%s", first, last,
                 claims.role, claims.subject)
    return response
