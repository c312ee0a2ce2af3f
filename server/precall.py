"""The pre-call connection test (issue 11): round trip and achievable bitrate to this node.

`GET /api/precall/probe?token=…` upgrades to a WebSocket on which the page measures:
  ping      {"type": "ping", "n": k}    → {"type": "pong", "n": k}      (at most MAX_PINGS)
  download  {"type": "download"}        → binary frames of random bytes for at most
                                           DOWNLOAD_BYTES / DOWNLOAD_S, then
                                           {"type": "downloaded", "bytes", "seconds"}
  upload    binary frames (≤ CHUNK_BYTES each, ≤ UPLOAD_BYTES in all), then
            {"type": "uploaded"}         → {"type": "upload_result", "bytes", "seconds"}
The messages are models (server/precall_messages.py), parsed as the call socket parses its own:
a text frame that is not one of them (not JSON, nested too deep, a lone surrogate, an unknown
`type`, a bad field, over MAX_TEXT_BYTES) or asks for more than the caps allow is answered with
{"type": "error", "code", "message"} and the probe goes on, as on the call socket.
The page times each step itself (it knows when it sent and when the reply came).

Why a WebSocket and not a WebRTC data channel: a data channel to the node would run over the
same UDP path and congestion control as the media, and be the truer test, but it costs a peer
connection (ICE, DTLS, SCTP) in aiortc per probe, on the node that carries the calls. A TCP probe
over the very host and port the page signals to finds what families actually hit (a slow or
lossy home link, a far node, a blocked port) for a fraction of that; its throughput is TCP's, a
little optimistic against lossy UDP, so the page's advice is deliberately conservative.

Bounds, so this cannot be used as a traffic amplifier or to load the node: only a participant
of a consultation that is not over (its own token), one probe at a time per participant and
PROBES_PER_WINDOW per WINDOW_S (429 otherwise), MAX_CONCURRENT on the node, fixed byte and time
caps per step and PROBE_MAX_S in all. The payload is made once at import (random, so no proxy can
compress it); sending it costs the loop nothing but socket writes. No personal data is read or
returned (only the consultation's participant ids are checked), so nothing is audited.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from core.auth import Claims, json_error
from core.lifecycle import State
from server.precall_messages import (
    MAX_TEXT_BYTES,
    PROBE_MESSAGES,
    Download,
    Downloaded,
    Error,
    Ping,
    Pong,
    ProbeReply,
    UploadResult,
)
from signaling.handler import participant
from signaling.protocol import ProtocolError, validate

CHUNK_BYTES = 32 * 1024
DOWNLOAD_BYTES = 2 * 1024 * 1024
DOWNLOAD_S = 3.0
UPLOAD_BYTES = 1024 * 1024
MAX_PINGS = 10
PROBE_MAX_S = 20.0
PROBES_PER_WINDOW = 6
WINDOW_S = 300.0
MAX_CONCURRENT = 8

_PAYLOAD = os.urandom(CHUNK_BYTES)


@dataclass
class ProbeLimiter:
    """Who is probing now, and when each participant last started a probe."""

    per_window: int = PROBES_PER_WINDOW
    window_s: float = WINDOW_S
    max_concurrent: int = MAX_CONCURRENT
    active: set[str] = field(default_factory=set)
    started: dict[str, deque[float]] = field(default_factory=dict)

    def start(self, key: str, now: float | None = None) -> str | None:
        """Take a slot for `key`; the reason if there is none."""
        now = time.monotonic() if now is None else now
        if key in self.active:
            return "a connection test is already running for this participant"
        if len(self.active) >= self.max_concurrent:
            return "too many connection tests on this node right now"
        if len(self.started) > 1000:  # forget participants whose window has passed
            self.started = {k: q for k, q in self.started.items()
                            if q and now - q[-1] <= self.window_s}
        recent = self.started.setdefault(key, deque())
        while recent and now - recent[0] > self.window_s:
            recent.popleft()
        if len(recent) >= self.per_window:
            return f"at most {self.per_window} connection tests per {self.window_s:.0f} s"
        recent.append(now)
        self.active.add(key)
        return None

    def finish(self, key: str) -> None:
        self.active.discard(key)


LIMITER_KEY = web.AppKey("precall_limiter", ProbeLimiter)


def add_routes(app: web.Application) -> None:
    app[LIMITER_KEY] = ProbeLimiter()
    app.router.add_get("/api/precall/probe", probe)


async def _participant(request: web.Request) -> Claims:
    claims, consultation = await participant(request, "test their link")
    if State(consultation.state).final:
        raise json_error(409, "bad_state", f"the consultation is already {consultation.state}")
    return claims


async def probe(request: web.Request) -> web.StreamResponse:
    """GET /api/precall/probe?token=… — the WebSocket of the connection test (see above)."""
    claims = await _participant(request)
    ws = web.WebSocketResponse(max_msg_size=CHUNK_BYTES * 2, compress=False)
    if not ws.can_prepare(request).ok:  # a plain GET must not use up one of the tests
        raise json_error(400, "websocket_expected", "the connection test is a WebSocket")
    limiter = request.app[LIMITER_KEY]
    key = f"{claims.consultation_id}/{claims.role}/{claims.subject}"
    refused = limiter.start(key)
    if refused:
        body = json.dumps({"error": {"code": "rate_limited", "message": refused}})
        raise web.HTTPTooManyRequests(text=body, content_type="application/json",
                                      headers={"Retry-After": "30"})
    try:
        await ws.prepare(request)
        try:
            async with asyncio.timeout(PROBE_MAX_S):
                await _serve(ws)
        except TimeoutError:
            pass
        await ws.close()
        return ws
    finally:
        limiter.finish(key)


async def _serve(ws: web.WebSocketResponse) -> None:
    pings = 0
    downloaded = False
    uploaded = 0
    upload_started: float | None = None
    async for frame in ws:
        if frame.type == WSMsgType.BINARY:
            upload_started = upload_started or time.monotonic()
            uploaded += len(frame.data)
            if uploaded > UPLOAD_BYTES:
                await ws.close(code=1009, message=b"upload limit")
                return
            continue
        if frame.type != WSMsgType.TEXT:
            continue
        try:
            message = validate(PROBE_MESSAGES, frame.data, MAX_TEXT_BYTES, refs=False)
        except ProtocolError as exc:
            await _send(ws, Error.model_validate(exc.to_message()))
            continue
        if isinstance(message, Ping):
            if pings >= MAX_PINGS:
                await _send(ws, _limit(f"at most {MAX_PINGS} pings per connection test"))
                continue
            pings += 1
            await _send(ws, Pong(type="pong", n=message.n))
        elif isinstance(message, Download):
            if downloaded:
                await _send(ws, _limit("one download per connection test"))
                continue
            downloaded = True
            await _send(ws, await _download(ws))
        else:  # Uploaded
            took = time.monotonic() - upload_started if upload_started else 0.0
            await _send(ws, UploadResult(type="upload_result", bytes=uploaded,
                                         seconds=round(took, 3)))
            return


def _limit(message: str) -> Error:
    return Error(type="error", code="limit", message=message)


async def _send(ws: web.WebSocketResponse, reply: ProbeReply) -> None:
    await ws.send_str(reply.model_dump_json(exclude_none=isinstance(reply, Error)))


async def _download(ws: web.WebSocketResponse) -> Downloaded:
    """Send random chunks until the byte or time cap; the writer's drain paces us to the link."""
    start = time.monotonic()
    sent = 0
    while sent < DOWNLOAD_BYTES and time.monotonic() - start < DOWNLOAD_S:
        await ws.send_bytes(_PAYLOAD)
        sent += len(_PAYLOAD)
    return Downloaded(type="downloaded", bytes=sent, seconds=round(time.monotonic() - start, 3))
