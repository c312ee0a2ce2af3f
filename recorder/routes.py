"""The recorder's HTTP API and the replay page. Only auditors and admins open recordings.

Every opening of a recording, every playback or download URL handed out, and the first use of
each, is an event in the consultation's hash-chained log (who, what, when).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.exceptions import InvalidTag
from sqlalchemy import select

from server.auth import CLAIMS_KEY, Role, json_error, requires
from server.store.models import SYSTEM_CHAIN, Consultation, Doctor, Hospital
from server.store.recordings import Recording, RecordingSegment
from signaling.handler import CONTEXT_KEY

from . import index
from .http import RECORDER_KEY
from .playback import PlaybackTokens
from .service import Recorder

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
AUDIT = (Role.AUDITOR, Role.ADMIN)


def add(app: web.Application) -> None:
    r = app.router
    r.add_get("/replay", replay_page)
    r.add_get("/api/recordings", search)
    r.add_post("/api/recordings/purge", purge_now)
    r.add_get("/api/recordings/{cid}", detail)
    r.add_get("/api/recordings/{cid}/verify", verify)
    r.add_post("/api/recordings/{cid}/segments/{sid}/access", access)
    r.add_put("/api/recordings/{cid}/hold", hold_set)
    r.add_delete("/api/recordings/{cid}/hold", hold_lift)
    r.add_get("/media/recordings/{sid}", media)


def _recorder(request: web.Request) -> Recorder:
    return request.app[RECORDER_KEY]


def _playback(request: web.Request) -> PlaybackTokens:
    return request.app[RECORDER_KEY].playback


def _actor(request: web.Request) -> str:
    claims = request[CLAIMS_KEY]
    return f"{claims.role}:{claims.subject}"


async def replay_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "replay.html", headers=_NO_STORE)


@requires(*AUDIT)
async def search(request: web.Request) -> web.Response:
    """Consultations by date, hospital, doctor, state and end/termination reason."""
    q = request.query
    query = (select(Consultation, Hospital.name, Doctor.name, Recording.status)
             .join(Hospital, Hospital.id == Consultation.hospital_id)
             .join(Doctor, Doctor.id == Consultation.doctor_id)
             .outerjoin(Recording, Recording.consultation_id == Consultation.id))
    try:
        if q.get("date_from"):
            query = query.where(Consultation.scheduled_at >= _day(q["date_from"]))
        if q.get("date_to"):
            query = query.where(Consultation.scheduled_at < _day(q["date_to"], end=True))
    except ValueError as exc:
        raise json_error(400, "bad_date", f"dates are YYYY-MM-DD: {exc}") from None
    for field, column in (("hospital", Hospital.name), ("doctor", Doctor.name),
                          ("reason", Consultation.end_reason)):
        if q.get(field):
            query = query.where(column.contains(q[field], autoescape=True))
    if q.get("state"):
        query = query.where(Consultation.state == q["state"])
    if q.get("recorded") == "1":
        query = query.where(Recording.status.is_not(None))
    query = query.order_by(Consultation.scheduled_at.desc()).limit(200)
    async with request.app[CONTEXT_KEY].db.session() as session:
        rows = (await session.execute(query)).all()
    await request.app[CONTEXT_KEY].events.append(SYSTEM_CHAIN, "recordings.search",
                                                 _actor(request),
                                                 {"query": dict(q), "found": len(rows)})
    return web.json_response({"consultations": [{
        "id": c.id, "hospital": hospital, "doctor": doctor, "state": c.state,
        "specialty": c.specialty, "scheduled_at": c.scheduled_at.isoformat(),
        "started_at": c.started_at.isoformat() if c.started_at else None,
        "ended_at": c.ended_at.isoformat() if c.ended_at else None,
        "end_reason": c.end_reason, "recording": status,
    } for c, hospital, doctor, status in rows]}, headers=_NO_STORE)


def _day(text: str, end: bool = False) -> datetime:
    from datetime import timedelta

    day = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return day + timedelta(days=1) if end else day


def _segment_json(s: RecordingSegment) -> dict[str, Any]:
    return {"id": s.id, "role": s.role, "seq": s.seq, "state": s.state,
            "t_start_ms": s.t_start_ms, "duration_ms": s.duration_ms,
            "started_at": s.started_at.isoformat(), "ended_at": s.ended_at.isoformat(),
            "size": s.size, "sha256": s.sha256, "key_id": s.key_id,
            "video_packets": s.video_packets, "audio_packets": s.audio_packets}


def _recording_json(r: Recording) -> dict[str, Any]:
    return {"status": r.status, "epoch": r.epoch_at.isoformat(),
            "ended_at": r.ended_at.isoformat() if r.ended_at else None,
            "retain_until": r.retain_until.isoformat() if r.retain_until else None,
            "legal_hold": r.legal_hold, "hold_reason": r.hold_reason, "hold_by": r.hold_by,
            "error": r.error}


async def _consultation(request: web.Request) -> Consultation:
    cid = request.match_info["cid"]
    async with request.app[CONTEXT_KEY].db.session() as session:
        consultation = await session.get(Consultation, cid)
    if consultation is None:
        raise json_error(404, "no_consultation", "no such consultation")
    return consultation


@requires(*AUDIT)
async def detail(request: web.Request) -> web.Response:
    """One consultation's recording: segments, the event timeline on the recording's clock."""
    ctx = request.app[CONTEXT_KEY]
    c = await _consultation(request)
    recording = await index.get_recording(ctx.db, c.id)
    await ctx.events.append(c.id, "recording.opened", _actor(request), {})
    segs = await index.segments(ctx.db, c.id)
    events = await ctx.events.events(c.id)
    epoch = recording.epoch_at if recording else None
    hospital = await _name(ctx, Hospital, c.hospital_id)
    doctor = await _name(ctx, Doctor, c.doctor_id)
    return web.json_response({
        "consultation": {"id": c.id, "state": c.state, "hospital": hospital, "doctor": doctor,
                         "specialty": c.specialty, "end_reason": c.end_reason,
                         "scheduled_at": c.scheduled_at.isoformat(),
                         "started_at": c.started_at.isoformat() if c.started_at else None,
                         "ended_at": c.ended_at.isoformat() if c.ended_at else None},
        "recording": _recording_json(recording) if recording else None,
        "segments": [_segment_json(s) for s in segs],
        "events": [{"seq": e.seq, "at": e.at.isoformat(), "kind": e.kind, "actor": e.actor,
                    "data": e.data,
                    "t_ms": int((e.at - epoch).total_seconds() * 1000) if epoch else None}
                   for e in events],
    }, headers=_NO_STORE)


async def _name(ctx: Any, model: type, id_: str) -> str | None:
    async with ctx.db.session() as session:
        row = await session.get(model, id_)
    return row.name if row else None


@requires(*AUDIT)
async def verify(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    c = await _consultation(request)
    report = await _recorder(request).verify(c.id)
    await ctx.events.append(c.id, "recording.verified", _actor(request), report.event_data())
    return web.json_response(report.public(), headers=_NO_STORE)


@requires(*AUDIT)
async def access(request: web.Request) -> web.Response:
    """A short-lived URL to play (or download) one segment; the grant itself is an event."""
    ctx = request.app[CONTEXT_KEY]
    c = await _consultation(request)
    seg = await index.get_segment(ctx.db, request.match_info["sid"])
    if seg is None or seg.consultation_id != c.id:
        raise json_error(404, "no_segment", "no such segment in this consultation")
    if seg.state == "purged":
        raise json_error(409, "purged", "this segment was deleted after its retention period")
    purpose = request.query.get("purpose", "play")
    if purpose not in ("play", "download"):
        raise json_error(400, "bad_purpose", "purpose is play or download")
    tokens = _playback(request)
    token = tokens.issue(seg.id, c.id, _actor(request), purpose)
    await ctx.events.append(c.id, f"recording.{purpose}", _actor(request), {
        "segment": seg.id, "role": seg.role, "seq": seg.seq})
    return web.json_response({"url": f"/media/recordings/{seg.id}?pt={token}",
                              "expires_in": tokens.ttl_s}, headers=_NO_STORE)


async def media(request: web.Request) -> web.StreamResponse:
    """The decrypted segment, with HTTP Range (players seek with it); `?pt=` authorises."""
    ctx = request.app[CONTEXT_KEY]
    tokens = _playback(request)
    try:
        grant = tokens.verify(request.query.get("pt", ""))
    except jwt.InvalidTokenError as exc:
        raise json_error(401, "bad_playback_token", f"playback token: {exc}") from None
    if grant.segment_id != request.match_info["sid"]:
        raise json_error(403, "wrong_segment", "this playback token is for another segment")
    seg = await index.get_segment(ctx.db, grant.segment_id)
    if seg is None or seg.state == "purged":
        raise json_error(404, "no_segment", "no such segment (or it was purged)")
    recorder = _recorder(request)
    try:
        dec = await asyncio.to_thread(recorder.decryptor, seg)
    except FileNotFoundError:
        raise json_error(404, "missing_file", "the segment's file is missing") from None
    except KeyError as exc:  # written under a key this node no longer has (rotation)
        raise json_error(500, "recording_key_missing", str(exc.args[0])) from None
    start, end = _range(request.headers.get("Range"), dec.size)
    pieces = dec.read(start, end)
    try:  # the first piece before any header goes out: an altered file is a clear error
        first = await asyncio.to_thread(next, pieces, None)
    except InvalidTag:
        raise json_error(409, "altered_segment", "the segment's file does not match what was "
                         "recorded (integrity check failed); it is not served") from None
    if tokens.first_use(grant):
        await ctx.events.append(seg.consultation_id, "recording.access", grant.actor, {
            "segment": seg.id, "purpose": grant.purpose, "token": grant.token_id})
    headers = {"Accept-Ranges": "bytes", "Content-Type": "video/webm",
               "Cache-Control": "no-store", "Content-Length": str(end - start)}
    if grant.purpose == "download":
        headers["Content-Disposition"] = (
            f'attachment; filename="{seg.consultation_id}-{seg.role}-{seg.seq:05d}.webm"')
    status = 200
    if request.headers.get("Range"):
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{dec.size}"
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    piece = first
    while piece is not None:
        await response.write(piece)
        piece = await asyncio.to_thread(next, pieces, None)
    await response.write_eof()
    return response


def _range(header: str | None, size: int) -> tuple[int, int]:
    """[start, end) for a single `bytes=a-b` range; 416 when it cannot be satisfied."""
    if not header:
        return 0, size
    match = _RANGE.match(header.strip())
    if match is None or (not match[1] and not match[2]):
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    if not match[1]:  # the last N bytes
        start, end = max(0, size - int(match[2])), size
    else:
        start = int(match[1])
        end = min(size, int(match[2]) + 1) if match[2] else size
    if start >= size or start >= end:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end


async def _hold(request: web.Request, hold: bool) -> web.Response:
    c = await _consultation(request)
    try:
        body = await request.json()
    except ValueError:
        body = {}
    reason = str(body.get("reason", "")).strip() if isinstance(body, dict) else ""
    if not reason:
        raise json_error(422, "reason_required", "a legal hold is set or lifted with a reason")
    try:
        row = await _recorder(request).set_hold(c.id, _actor(request), reason[:500], hold)
    except LookupError:
        raise json_error(404, "no_recording", "this consultation has no recording") from None
    return web.json_response(_recording_json(row), headers=_NO_STORE)


@requires(Role.ADMIN)
async def hold_set(request: web.Request) -> web.Response:
    return await _hold(request, True)


@requires(Role.ADMIN)
async def hold_lift(request: web.Request) -> web.Response:
    return await _hold(request, False)


@requires(Role.ADMIN)
async def purge_now(request: web.Request) -> web.Response:
    purged = await _recorder(request).purge()
    return web.json_response({"purged": purged}, headers=_NO_STORE)
