"""The recorder's HTTP API and the replay page. Only auditors and admins open recordings.

Every opening of a recording, every playback or download URL handed out, and the first use of
each, is an event in the consultation's hash-chained log (who, what, when).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import jwt
from aiohttp import web
from cryptography.exceptions import InvalidTag
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from core import fields
from core.auth import CLAIMS_KEY, Role, json_error
from core.context import CONTEXT_KEY
from core.endpoint import NO_STORE, endpoint, page
from core.fields import Day, Name
from core.lifecycle import State
from core.store.models import SYSTEM_CHAIN, Consultation, Doctor, Hospital
from core.store.recordings import Recording, RecordingSegment

from . import index
from .keys import KeyMissing, WrappedKeyInvalid
from .playback import PlaybackTokens
from .service import RECORDER_KEY, Recorder

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# ASCII digits only (`\d` takes Arabic-Indic ones too), and no more of them than a size can
# have: Python's int() refuses more than 4,300 digits with a ValueError.
_RANGE = re.compile(r"^bytes=([0-9]{0,18})-([0-9]{0,18})$")
AUDIT = (Role.AUDITOR, Role.ADMIN)

log = logging.getLogger(__name__)


# -- what each route accepts --------------------------------------------------------------------

class RecordingSearch(BaseModel):
    """Consultations by scheduled day (UTC, both ends included) and by what else is known."""

    model_config = ConfigDict(extra="forbid")
    date_from: Day | None = None
    date_to: Day | None = None
    hospital: fields.text(200) | None = None  # type: ignore[valid-type]
    doctor: Name | None = None
    state: Literal[tuple(s.value for s in State)] | None = None  # type: ignore[valid-type]
    reason: fields.text(500) | None = None  # type: ignore[valid-type]
    recorded: bool = False  # only consultations that have a recording


class AccessQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: Literal["play", "download"] = "play"


class PlaybackQuery(BaseModel):
    """The media URL's own grant (a player cannot send a header); absent or bad: 401."""

    model_config = ConfigDict(extra="forbid")
    # A JWT's characters only: so the longest grant still fits aiohttp's request line (8190
    # bytes) unescaped, where any other character would take up to 12 bytes percent-encoded.
    pt: Annotated[str, Field(max_length=4096, pattern=r"^[A-Za-z0-9_.-]*$",
                             description="the playback grant that "
                             "/api/recordings/{cid}/segments/{sid}/access handed out")] = ""


class HoldChange(BaseModel):
    """A legal hold is set or lifted with a reason, kept in the consultation's event log."""

    model_config = ConfigDict(extra="forbid")
    reason: fields.text(500)  # type: ignore[valid-type]


def add(app: web.Application) -> None:
    r = app.router
    r.add_get("/replay", replay_page)
    # No HEAD on the audited reads (a search, an opening, a verification that re-hashes every
    # segment): each is an event (issue 17; tests/test_streaming_routes.py).
    r.add_get("/api/recordings", search, allow_head=False)
    r.add_post("/api/recordings/purge", purge_now)
    r.add_get("/api/recordings/{cid}", detail, allow_head=False)
    r.add_get("/api/recordings/{cid}/verify", verify, allow_head=False)
    r.add_post("/api/recordings/{cid}/segments/{sid}/access", access)
    r.add_put("/api/recordings/{cid}/hold", hold_set)
    r.add_delete("/api/recordings/{cid}/hold", hold_lift)
    # No HEAD (aiohttp adds one to every GET): it would stream the body, count as the grant's
    # first use, and leave a pipelined request unanswered. A HEAD is 405.
    r.add_get("/media/recordings/{sid}", media, allow_head=False)


def _recorder(request: web.Request) -> Recorder:
    return request.app[RECORDER_KEY]


def _playback(request: web.Request) -> PlaybackTokens:
    return request.app[RECORDER_KEY].playback


def _actor(request: web.Request) -> str:
    claims = request[CLAIMS_KEY]
    return f"{claims.role}:{claims.subject}"


replay_page = page(STATIC_DIR / "replay.html",
                   "The auditor's replay page (its API calls carry the token).")


@endpoint(*AUDIT, query=RecordingSearch)
async def search(request: web.Request, query: RecordingSearch) -> web.Response:
    """Consultations by date, hospital, doctor, state and end/termination reason."""
    found = (select(Consultation, Hospital.name, Doctor.name, Recording.status)
             .join(Hospital, Hospital.id == Consultation.hospital_id)
             .join(Doctor, Doctor.id == Consultation.doctor_id)
             .outerjoin(Recording, Recording.consultation_id == Consultation.id))
    if query.date_from:
        found = found.where(Consultation.scheduled_at >= _day(query.date_from))
    if query.date_to:
        found = found.where(Consultation.scheduled_at < _day(query.date_to + timedelta(days=1)))
    for value, column in ((query.hospital, Hospital.name), (query.doctor, Doctor.name),
                          (query.reason, Consultation.end_reason)):
        if value:
            found = found.where(column.contains(value, autoescape=True))
    if query.state:
        found = found.where(Consultation.state == query.state)
    if query.recorded:
        found = found.where(Recording.status.is_not(None))
    found = found.order_by(Consultation.scheduled_at.desc()).limit(200)
    async with request.app[CONTEXT_KEY].db.session() as session:
        rows = (await session.execute(found)).all()
    await request.app[CONTEXT_KEY].events.append(
        SYSTEM_CHAIN, "recordings.search", _actor(request),
        {"query": query.model_dump(mode="json", exclude_unset=True), "found": len(rows)})
    return web.json_response({"consultations": [{
        "id": c.id, "hospital": hospital, "doctor": doctor, "state": c.state,
        "specialty": c.specialty, "scheduled_at": c.scheduled_at.isoformat(),
        "started_at": c.started_at.isoformat() if c.started_at else None,
        "ended_at": c.ended_at.isoformat() if c.ended_at else None,
        "end_reason": c.end_reason, "recording": status,
    } for c, hospital, doctor, status in rows]}, headers=NO_STORE)


def _day(day: date) -> datetime:
    """The start of a UTC day (fields.Day keeps the day + 1 of the end well inside `date`)."""
    return datetime.combine(day, time(), UTC)


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


@endpoint(*AUDIT)
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
    }, headers=NO_STORE)


async def _name(ctx: Any, model: type, id_: str) -> str | None:
    async with ctx.db.session() as session:
        row = await session.get(model, id_)
    return row.name if row else None


@endpoint(*AUDIT)
async def verify(request: web.Request) -> web.Response:
    """Re-hash the consultation's segments and check them against the event log."""
    ctx = request.app[CONTEXT_KEY]
    c = await _consultation(request)
    report = await _recorder(request).verify(c.id)
    await ctx.events.append(c.id, "recording.verified", _actor(request), report.event_data())
    return web.json_response(report.public(), headers=NO_STORE)


@endpoint(*AUDIT, query=AccessQuery)
async def access(request: web.Request, query: AccessQuery) -> web.Response:
    """A short-lived URL to play (or download) one segment; the grant itself is an event."""
    ctx = request.app[CONTEXT_KEY]
    c = await _consultation(request)
    seg = await index.get_segment(ctx.db, request.match_info["sid"])
    if seg is None or seg.consultation_id != c.id:
        raise json_error(404, "no_segment", "no such segment in this consultation")
    if seg.state == "purged":
        raise json_error(409, "purged", "this segment was deleted after its retention period")
    purpose = query.purpose
    tokens = _playback(request)
    token = tokens.issue(seg.id, c.id, _actor(request), purpose)
    await ctx.events.append(c.id, f"recording.{purpose}", _actor(request), {
        "segment": seg.id, "role": seg.role, "seq": seg.seq})
    return web.json_response({"url": f"/media/recordings/{seg.id}?pt={token}",
                              "expires_in": tokens.ttl_s}, headers=NO_STORE)


@endpoint(query=PlaybackQuery, auth="playback")
async def media(request: web.Request, query: PlaybackQuery) -> web.StreamResponse:
    """The decrypted segment, with HTTP Range (players seek with it); `?pt=` authorises."""
    ctx = request.app[CONTEXT_KEY]
    tokens = _playback(request)
    try:
        grant = tokens.verify(query.pt)
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
    except KeyMissing as exc:  # wrapped under a master key this node does not have
        raise json_error(500, "recording_key_missing", str(exc), key_id=exc.kid) from None
    except WrappedKeyInvalid as exc:  # the index's wrapped key was altered or swapped
        raise json_error(409, "recording_key_invalid", str(exc), key_id=seg.key_id) from None
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
    try:
        await response.prepare(request)
        piece = first
        while piece is not None:
            await response.write(piece)
            piece = await asyncio.to_thread(next, pieces, None)
        await response.write_eof()
    except ConnectionResetError:  # (aiohttp's ClientConnectionResetError is one)
        # The player seeked or the tab closed: the client's choice, not the node's fault.
        log.info("download aborted by the client: recording segment %s of %s", seg.id,
                 seg.consultation_id, extra={"consultation": seg.consultation_id})
    return response


def _range(header: str | None, size: int) -> tuple[int, int]:
    """[start, end) for a single `bytes=a-b` range; 416 when it cannot be satisfied."""
    if not header:
        return 0, size
    match = _RANGE.match(header.strip())
    if match is None or (not match[1] and not match[2]):
        raise _unsatisfiable(size)
    if not match[1]:  # the last N bytes
        start, end = max(0, size - int(match[2])), size
    else:
        start = int(match[1])
        end = min(size, int(match[2]) + 1) if match[2] else size
    if start >= size or start >= end:
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> web.HTTPException:
    body = json.dumps({"error": {"code": "bad_range", "message": "one range, bytes=a-b in "
                                 f"ASCII digits, within the {size} bytes of the segment"}})
    return web.HTTPRequestRangeNotSatisfiable(text=body, content_type="application/json",
                                              headers={"Content-Range": f"bytes */{size}"})


async def _hold(request: web.Request, body: HoldChange, hold: bool) -> web.Response:
    c = await _consultation(request)
    try:
        row = await _recorder(request).set_hold(c.id, _actor(request), body.reason, hold)
    except LookupError:
        raise json_error(404, "no_recording", "this consultation has no recording") from None
    return web.json_response(_recording_json(row), headers=NO_STORE)


@endpoint(Role.ADMIN, body=HoldChange)
async def hold_set(request: web.Request, body: HoldChange) -> web.Response:
    """Keep this recording past its retention date (purges skip it) until the hold is lifted."""
    return await _hold(request, body, True)


@endpoint(Role.ADMIN, body=HoldChange)
async def hold_lift(request: web.Request, body: HoldChange) -> web.Response:
    """Lift the legal hold: the next purge deletes what is past its retention date."""
    return await _hold(request, body, False)


@endpoint(Role.ADMIN)
async def purge_now(request: web.Request) -> web.Response:
    """Delete every segment past its retention date and not on legal hold, now. A segment the
    store still keeps (Object Lock) is not purged: a `recording.purge_refused` event instead."""
    purged = await _recorder(request).purge()
    return web.json_response({"purged": purged}, headers=NO_STORE)
