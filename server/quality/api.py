"""HTTP routes for questions, complaints and adverse events, and the quality staff's page.

The guardian asks or complains on their own consultation (their token) and reads the answers
there, also after the call token expired (the feedback token, feedback_token.py); the doctor
files adverse events on their own consultation; quality staff and admin see every open item,
answer, handle and close. Every refusal is a JSON error with a code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from core import fields
from core.auth import CLAIMS_KEY, TOKENS_KEY, Role, json_error
from core.context import CONTEXT_KEY
from core.endpoint import NO_STORE, endpoint, page
from core.store import SYSTEM_CHAIN, Consultation, Hospital, records
from core.store.quality import (
    ADVERSE_ACTIONS,
    FEEDBACK_CATEGORIES,
    FEEDBACK_KINDS,
    MAX_TEXT,
    SEVERITIES,
)
from server.quality import Refused, adverse, feedback, feedback_token, refs, role_of

STAFF = (Role.QUALITY, Role.ADMIN)
# The guardian: with the call token, or later with the feedback token (feedback_token.py).
GUARDIAN = (Role.GUARDIAN, Role.GUARDIAN_FEEDBACK)


def add_routes(app: web.Application, static_dir: Path) -> None:
    app.router.add_get("/quality", page(
        static_dir / "quality-desk.html",
        "The quality staff's page: open questions, complaints and adverse events."))
    app.router.add_post("/api/consultations/{cid}/feedback", open_feedback)
    # No HEAD on the four lists: each read is an event (issue 17; tests/test_streaming_routes.py).
    app.router.add_get("/api/consultations/{cid}/feedback", consultation_feedback,
                       allow_head=False)
    app.router.add_get("/api/quality/feedback", open_feedback_list, allow_head=False)
    app.router.add_post("/api/quality/feedback/{ref}/reply", reply_feedback)
    app.router.add_post("/api/quality/feedback/{ref}/close", close_feedback)
    app.router.add_post("/api/consultations/{cid}/adverse-events", file_adverse_event)
    app.router.add_get("/api/consultations/{cid}/adverse-events", consultation_adverse_events,
                       allow_head=False)
    app.router.add_get("/api/quality/adverse-events", open_adverse_list, allow_head=False)
    app.router.add_post("/api/quality/adverse-events/{ref}/actions", handle_adverse_event)
    app.router.add_post("/api/quality/adverse-events/{ref}/close", close_adverse_event)


# -- what each route accepts --------------------------------------------------------------------

# What guardians and staff write for each other: plain text, never markup (422
# `markup_not_allowed`, the field named); shown as text on every page regardless.
Text = fields.plain_text(MAX_TEXT)


class NewFeedback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal[FEEDBACK_KINDS]  # type: ignore[valid-type]
    category: Literal[FEEDBACK_CATEGORIES] | None = None  # type: ignore[valid-type]
    text: Text  # type: ignore[valid-type]


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Text  # type: ignore[valid-type]


class NewAdverseEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    severity: Literal[SEVERITIES]  # type: ignore[valid-type]
    description: Text  # type: ignore[valid-type]


class Handling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal[ADVERSE_ACTIONS]  # type: ignore[valid-type]
    note: Text  # type: ignore[valid-type]


class Listing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    closed: bool = False  # false: everything not yet closed (the worklist)
    limit: int = Field(default=200, ge=1, le=500)


# -- helpers ------------------------------------------------------------------------------------

def _who(request: web.Request) -> tuple[str, str]:
    """(actor for the event, the capacity for `by`: a doctor's day token files as the doctor)."""
    claims = request[CLAIMS_KEY]
    actor = f"{claims.role}:{claims.subject}"
    return actor, role_of(actor)


def _refusal(exc: Refused) -> web.HTTPException:
    return json_error(exc.status, exc.code, exc.message, zh=exc.zh)


async def _consultation(request: web.Request) -> Consultation:
    cid = request.match_info["cid"]
    consultation = await records.get_consultation(request.app[CONTEXT_KEY].db, cid)
    if consultation is None:
        raise json_error(404, "no_consultation", "no such consultation", zh="没有该问诊")
    return consultation


def _ref(request: web.Request, missing: str) -> str:
    ref = request.match_info["ref"]
    if not refs.PATTERN.match(ref):
        raise json_error(404, missing, f"no such reference number {ref[:40]!r}",
                         zh="没有该编号")
    return ref


def _at(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def feedback_json(thread: feedback.Thread, staff: bool) -> dict[str, Any]:
    """One item as its page shows it; the guardian sees who answered by role only."""
    item = thread.item
    data = {
        "ref": item.ref, "kind": item.kind, "category": item.category, "text": item.text,
        "status": item.status, "created_at": _at(item.created_at),
        "closed_at": _at(item.closed_at),
        "replies": [{"text": r.text, "by": r.author if staff else role_of(r.author),
                     "at": _at(r.created_at)} for r in thread.replies],
    }
    if staff:
        data |= {"consultation_id": item.consultation_id, "opened_by": item.opened_by,
                 "closed_by": item.closed_by}
    return data


def adverse_json(record: adverse.Record, staff: bool) -> dict[str, Any]:
    row = record.event
    data = {
        "ref": row.ref, "severity": row.severity, "description": row.description,
        "status": row.status, "created_at": _at(row.created_at),
        "filed_by": row.filed_by if staff else role_of(row.filed_by),
        "closed_at": _at(row.closed_at),
        "closed_by": row.closed_by if staff else (role_of(row.closed_by) if row.closed_by
                                                  else None),
        "actions": [{"action": s.action, "note": s.note,
                     "by": s.author if staff else role_of(s.author), "at": _at(s.created_at)}
                    for s in record.actions],
    }
    if staff:
        data["consultation_id"] = row.consultation_id
    return data


async def _consultations(request: web.Request, ids: set[str]) -> dict[str, dict[str, Any]]:
    """What staff see of each consultation in a list (least data: no names of people)."""
    async with request.app[CONTEXT_KEY].db.session() as session:
        rows = list(await session.scalars(select(Consultation).where(Consultation.id.in_(ids))))
        hospitals = {h.id: h.name for h in await session.scalars(
            select(Hospital).where(Hospital.id.in_({c.hospital_id for c in rows})))}
    return {c.id: {"id": c.id, "hospital": hospitals.get(c.hospital_id),
                   "specialty": c.specialty, "visit_type": c.visit_type, "state": c.state,
                   "scheduled_at": _at(c.scheduled_at)} for c in rows}


async def _audited(request: web.Request, what: str, count: int) -> None:
    """Staff reading people's words is itself on the record (system chain)."""
    actor, _ = _who(request)
    await request.app[CONTEXT_KEY].events.append(SYSTEM_CHAIN, "quality.read", actor,
                                                 {"what": what, "count": count})


# -- questions and complaints -----------------------------------------------------------------

@endpoint(*GUARDIAN, body=NewFeedback)
async def open_feedback(request: web.Request, body: NewFeedback) -> web.Response:
    """Ask a question or make a complaint about this consultation; 201 with its reference.

    Filed with the call token, the answer also carries `feedback_token` (and its
    `feedback_expires_at`): the guardian's key to the answers after the call token expired."""
    consultation = await _consultation(request)
    ctx = request.app[CONTEXT_KEY]
    claims = request[CLAIMS_KEY]
    actor, _ = _who(request)
    try:
        item = await feedback.open_item(ctx.db, ctx.events, consultation.id, actor, body.kind,
                                        body.category, body.text, ctx.clock.now())
    except Refused as exc:
        raise _refusal(exc) from None
    data = feedback_json(feedback.Thread(item, []), staff=False)
    if claims.role == Role.GUARDIAN:
        later = await feedback_token.issue(request.app[TOKENS_KEY], ctx.events, consultation,
                                           claims.subject, actor, ctx.settings.feedback_days)
        if later is not None:
            data |= {"feedback_token": later.token,
                     "feedback_expires_at": later.expires_at.isoformat()}
    return web.json_response(data, status=201, headers=NO_STORE)


@endpoint(*GUARDIAN, *STAFF)
async def consultation_feedback(request: web.Request) -> web.Response:
    """This consultation's questions and complaints with the answers, oldest first."""
    consultation = await _consultation(request)
    staff = request[CLAIMS_KEY].role in STAFF
    threads = await feedback.threads(request.app[CONTEXT_KEY].db, cid=consultation.id)
    if staff:
        await _audited(request, f"feedback of {consultation.id}", len(threads))
    return web.json_response({"consultation": consultation.id,
                              "items": [feedback_json(t, staff) for t in threads]},
                             headers=NO_STORE)


@endpoint(*STAFF, query=Listing)
async def open_feedback_list(request: web.Request, query: Listing) -> web.Response:
    """Every question and complaint not yet closed (or, `closed=true`, the closed ones)."""
    threads = await feedback.threads(request.app[CONTEXT_KEY].db, closed=query.closed,
                                     limit=query.limit)
    consultations = await _consultations(request, {t.item.consultation_id for t in threads})
    await _audited(request, "feedback", len(threads))
    return web.json_response({"items": [
        feedback_json(t, staff=True) | {"consultation": consultations.get(t.item.consultation_id)}
        for t in threads]}, headers=NO_STORE)


@endpoint(*STAFF, body=Reply)
async def reply_feedback(request: web.Request, body: Reply) -> web.Response:
    """Answer a question or complaint; the guardian reads it on their link."""
    ref = _ref(request, "no_feedback")
    ctx = request.app[CONTEXT_KEY]
    actor, by = _who(request)
    try:
        answer = await feedback.reply(ctx.db, ctx.events, ref, actor, by, body.text)
    except Refused as exc:
        raise _refusal(exc) from None
    return web.json_response({"ref": ref, "status": "replied", "reply": {
        "text": answer.text, "by": answer.author, "at": _at(answer.created_at)}}, status=201)


@endpoint(*STAFF)
async def close_feedback(request: web.Request) -> web.Response:
    """Close a question or complaint."""
    ref = _ref(request, "no_feedback")
    ctx = request.app[CONTEXT_KEY]
    actor, by = _who(request)
    try:
        item = await feedback.close(ctx.db, ctx.events, ref, actor, by)
    except Refused as exc:
        raise _refusal(exc) from None
    return web.json_response({"ref": ref, "status": item.status,
                              "closed_at": _at(item.closed_at)})


# -- adverse events ---------------------------------------------------------------------------

# The doctor: with the call token (this consultation), or with the day token (any of their own
# consultations: an adverse event noticed after the call, the call page closed).
DOCTOR = (Role.DOCTOR, Role.DOCTOR_DAY)


async def _doctors_own(request: web.Request) -> Consultation:
    """The route's consultation; with a day token only the doctor's own (403 otherwise, and the
    refusal is an event on that consultation, as a refused join from the worklist is)."""
    consultation = await _consultation(request)
    claims = request[CLAIMS_KEY]
    if claims.role == Role.DOCTOR_DAY and consultation.doctor_id != claims.subject:
        actor, _ = _who(request)
        await request.app[CONTEXT_KEY].events.append(
            consultation.id, "adverse_event.refused", actor, {"code": "not_your_consultation"})
        raise json_error(403, "not_your_consultation", "this consultation is another doctor's",
                         zh="这不是您的问诊")
    return consultation


@endpoint(*DOCTOR, *STAFF, body=NewAdverseEvent)
async def file_adverse_event(request: web.Request, body: NewAdverseEvent) -> web.Response:
    """File an adverse event on this consultation; a severe one alerts ops at once."""
    consultation = await _doctors_own(request)
    ctx = request.app[CONTEXT_KEY]
    actor, by = _who(request)
    try:
        row = await adverse.file(ctx.db, ctx.events, consultation.id, actor, by, body.severity,
                                 body.description, ctx.clock.now())
    except Refused as exc:
        raise _refusal(exc) from None
    alerted = False
    if row.severity == adverse.SEVERE:
        alerted = await adverse.alert_ops(ctx.live, ctx.settings.node_id, row)
    staff = request[CLAIMS_KEY].role in STAFF
    return web.json_response(adverse_json(adverse.Record(row, []), staff=staff)
                             | {"alerted": alerted}, status=201, headers=NO_STORE)


@endpoint(*DOCTOR, *STAFF)
async def consultation_adverse_events(request: web.Request) -> web.Response:
    """This consultation's adverse events with their handling records."""
    consultation = await _doctors_own(request)
    staff = request[CLAIMS_KEY].role in STAFF
    found = await adverse.records(request.app[CONTEXT_KEY].db, cid=consultation.id)
    if staff:
        await _audited(request, f"adverse events of {consultation.id}", len(found))
    return web.json_response({"consultation": consultation.id,
                              "items": [adverse_json(r, staff) for r in found]},
                             headers=NO_STORE)


@endpoint(*STAFF, query=Listing)
async def open_adverse_list(request: web.Request, query: Listing) -> web.Response:
    """Every adverse event not yet closed (or, `closed=true`, the closed ones)."""
    found = await adverse.records(request.app[CONTEXT_KEY].db, closed=query.closed,
                                  limit=query.limit)
    consultations = await _consultations(request, {r.event.consultation_id for r in found})
    await _audited(request, "adverse events", len(found))
    return web.json_response({"items": [
        adverse_json(r, staff=True) | {"consultation": consultations.get(r.event.consultation_id)}
        for r in found]}, headers=NO_STORE)


@endpoint(*STAFF, body=Handling)
async def handle_adverse_event(request: web.Request, body: Handling) -> web.Response:
    """Record a handling step: what was done, with the details."""
    ref = _ref(request, "no_adverse_event")
    ctx = request.app[CONTEXT_KEY]
    actor, by = _who(request)
    try:
        step = await adverse.handle(ctx.db, ctx.events, ref, actor, by, body.action, body.note)
    except Refused as exc:
        raise _refusal(exc) from None
    return web.json_response({"ref": ref, "status": "handling", "action": {
        "action": step.action, "note": step.note, "by": step.author,
        "at": _at(step.created_at)}}, status=201)


@endpoint(*STAFF)
async def close_adverse_event(request: web.Request) -> web.Response:
    """Close an adverse event once its handling record says what was done."""
    ref = _ref(request, "no_adverse_event")
    ctx = request.app[CONTEXT_KEY]
    actor, by = _who(request)
    try:
        row = await adverse.close(ctx.db, ctx.events, ref, actor, by)
    except Refused as exc:
        raise _refusal(exc) from None
    return web.json_response({"ref": ref, "status": row.status,
                              "closed_at": _at(row.closed_at)})
