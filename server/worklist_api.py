"""HTTP: the doctor's day token, the worklist (JSON and server-sent events), joining from it, and
the guardian's place in the queue.

Security: a `doctor_day` token names a doctor and no consultation. No route but these lists that
role, and the adverse-event routes of the doctor's own consultations (server/quality/api.py), so
it opens nothing else (the call's WebSocket takes only doctor and guardian tokens bound to one
consultation). Joining from the worklist mints a per-consultation doctor token, and only
for that doctor's own consultation of today that is not over, while the doctor is still active
in the registry; the minted token never outlives the day token. Each issue and each join (and
each refused join) is an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.auth import CLAIMS_KEY, TOKENS_KEY, Role, json_error
from core.context import CONTEXT_KEY
from core.endpoint import NO_STORE, endpoint, page
from core.policy.dates import consultation_date
from core.store import SYSTEM_CHAIN, records
from server.day_token import MAX_HOURS, DayTokenRefused, issue_day_link
from server.worklist import (
    average_visit_s,
    doctor_day,
    queue_place,
    recent_visit_lengths,
    worklist,
)

REFRESH_S = 1.0  # a snapshot of the worklist this often on the stream


def add_routes(app: web.Application, static_dir: Path) -> None:
    app.router.add_get("/worklist", page(
        static_dir / "worklist.html", "The doctor's worklist page (the day token comes in the "
        "fragment)."))
    app.router.add_post("/api/admin/doctors/{doctor_id}/day-token", issue_day_token)
    # No HEAD (aiohttp adds one to every GET): it would log a `worklist.read` that showed
    # nothing, and on the stream send the events forever (issue 17). 405.
    app.router.add_get("/api/worklist", worklist_view, allow_head=False)
    app.router.add_get("/api/worklist/stream", worklist_stream, allow_head=False)
    app.router.add_post("/api/worklist/{cid}/join", join)
    app.router.add_get("/api/queue", queue)


class DayTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hours: Annotated[int, Field(ge=1, le=MAX_HOURS)] = 12


def _actor(request: web.Request) -> str:
    claims = request[CLAIMS_KEY]
    return f"{claims.role}:{claims.subject}"


@endpoint(Role.ADMIN, body=DayTokenRequest)
async def issue_day_token(request: web.Request, body: DayTokenRequest) -> web.Response:
    """A doctor's day token: their worklist for `hours`, and from it only their own calls."""
    ctx = request.app[CONTEXT_KEY]
    doctor_id = request.match_info["doctor_id"]
    try:
        day = await issue_day_link(ctx.db, ctx.events, request.app[TOKENS_KEY],
                                   ctx.settings.public_url, doctor_id, body.hours,
                                   _actor(request))
    except DayTokenRefused as exc:
        raise json_error(404 if exc.code == "no_doctor" else 409, exc.code,
                         exc.message) from None
    return web.json_response({
        "doctor_id": doctor_id, "token": day.token, "expires_at": day.expires_at.isoformat(),
        "link": day.link},
        status=201, headers=NO_STORE)


async def _snapshot(request: web.Request) -> dict[str, Any]:
    ctx = request.app[CONTEXT_KEY]
    doctor_id = request[CLAIMS_KEY].subject
    doctor = await records.get_doctor(ctx.db, doctor_id)
    today = await doctor_day(ctx.db, ctx.live, doctor_id, consultation_date(ctx.clock.now()))
    return {
        "type": "worklist", "date": today.day.isoformat(),
        "doctor": {"id": doctor_id, "name": doctor.name if doctor else None,
                   "active": bool(doctor and doctor.whitelist_status == "active")},
        "live_state": "ok" if today.live_ok else "unavailable",
        "consultations": await worklist(ctx.db, today, ctx.settings.presence.pediatric_age),
    }


async def _log_read(request: web.Request, how: str) -> None:
    """The list shows (masked) patient data: who looked, as for every read of personal data."""
    await request.app[CONTEXT_KEY].events.append(
        SYSTEM_CHAIN, "worklist.read", _actor(request), {"how": how})


@endpoint(Role.DOCTOR_DAY)
async def worklist_view(request: web.Request) -> web.Response:
    """Today's consultations of the token's doctor (Beijing date), with live status."""
    await _log_read(request, "once")
    return web.json_response(await _snapshot(request), headers=NO_STORE,
                             dumps=lambda v: json.dumps(v, ensure_ascii=False))


@endpoint(Role.DOCTOR_DAY, query_token=True, events=True)
async def worklist_stream(request: web.Request) -> web.StreamResponse:
    """The worklist as server-sent events, a snapshot every second (EventSource: token in query).

    The stream ends when the day token expires or the doctor is no longer active in the
    registry: a stream is not a way to outlive either.
    """
    await _log_read(request, "stream")
    expires_at = request[CLAIMS_KEY].expires_at
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **NO_STORE})
    await response.prepare(request)
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        while request.app[TOKENS_KEY].now() < expires_at:
            snapshot = await _snapshot(request)
            message = json.dumps(snapshot, ensure_ascii=False)
            await response.write(f"data: {message}\n\n".encode())
            if not snapshot["doctor"]["active"]:
                break
            await asyncio.sleep(REFRESH_S)
    return response


async def _refuse_join(request: web.Request, cid: str, status: int, code: str,
                       message: str) -> web.HTTPException:
    await request.app[CONTEXT_KEY].events.append(cid, "worklist.join.refused", _actor(request),
                                                 {"code": code})
    return json_error(status, code, message)


@endpoint(Role.DOCTOR_DAY)
async def join(request: web.Request) -> web.Response:
    """Open one of the doctor's own consultations of today: its call link (a doctor token for
    that consultation alone, expiring no later than the day token)."""
    ctx = request.app[CONTEXT_KEY]
    claims = request[CLAIMS_KEY]
    cid = request.match_info["cid"]
    consultation = await records.get_consultation(ctx.db, cid)
    if consultation is None:
        raise json_error(404, "no_consultation", "no such consultation")
    if consultation.doctor_id != claims.subject:
        raise await _refuse_join(request, cid, 403, "not_your_consultation",
                                 "this consultation is another doctor's")
    doctor = await records.get_doctor(ctx.db, claims.subject)
    if doctor is None or doctor.whitelist_status != "active":
        raise await _refuse_join(request, cid, 403, "doctor_not_active",
                                 "the doctor is not active in the registry")
    if consultation.state in ("ended", "terminated", "aborted"):
        raise json_error(409, "bad_state", f"the consultation is already {consultation.state}")
    if consultation_date(consultation.scheduled_at) != consultation_date(ctx.clock.now()):
        raise await _refuse_join(request, cid, 409, "not_today",
                                 "only today's consultations open from the worklist")
    ttl = min(ctx.settings.token_ttl_s, claims.expires_at - request.app[TOKENS_KEY].now())
    if ttl <= 0:
        raise json_error(401, "bad_token", "token expired")
    token = request.app[TOKENS_KEY].issue(Role.DOCTOR, claims.subject, cid, ttl_s=ttl)
    await ctx.events.append(cid, "worklist.join", _actor(request), {"ttl_s": ttl})
    return web.json_response({"consultation_id": cid, "link": f"/call#token={token}",
                              "expires_in_s": ttl}, headers=NO_STORE)


@endpoint(Role.GUARDIAN)
async def queue(request: web.Request) -> web.Response:
    """The guardian's place in the doctor's queue and roughly how long until the doctor comes."""
    ctx = request.app[CONTEXT_KEY]
    cid = str(request[CLAIMS_KEY].consultation_id)
    mine = await records.get_consultation(ctx.db, cid)
    if mine is None:
        raise json_error(404, "no_consultation", "no such consultation")
    now = ctx.clock.now()
    today = await doctor_day(ctx.db, ctx.live, mine.doctor_id,
                             consultation_date(mine.scheduled_at))
    visit_s = average_visit_s(await recent_visit_lengths(ctx.db, mine.doctor_id, now))
    return web.json_response({"consultation_id": cid, **queue_place(mine, today, now, visit_s)},
                             headers=NO_STORE)
