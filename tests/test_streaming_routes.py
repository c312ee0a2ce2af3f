"""The streaming routes (a recording's media, the regulator's export, the ops and worklist
server-sent events) over raw HTTP/1.1: HEAD is 405, sends no body and leaves no audit trace, a
GET pipelined after it is answered, and a client that walks away in the middle of a download is
an INFO line, not an ERROR (issue 17). And no GET route that writes an audit event on a read
answers HEAD (a HEAD would log a read that delivered nothing)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import tempfile
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from core.auth import BOUND_ROLES, Role
from core.endpoint import declared
from core.store import SYSTEM_CHAIN, Event
from recorder import index
from recorder.segment import store_blocking
from server.app import create_app

from .clinical_helpers import around_today
from .node_fixtures import Node, node_settings, start_node
from .recording_helpers import closed_segments, recorded_call, recorder_of, wait_for

WEBM_MAGIC = b"\x1a\x45\xdf\xa3"


@pytest.fixture
async def rec_node(tmp_path):
    async with start_node(node_settings(tmp_path / "node", recording_segment_s=2.0)) as n:
        yield n


class ServedAsInProduction(TestServer):
    """`python -m server run` (web.run_app) does not cancel a handler whose client went away:
    the handler sees the broken connection on its next write. TestServer cancels it instead."""

    async def _make_runner(self, **kwargs):  # type: ignore[no-untyped-def]
        return await super()._make_runner(**{**kwargs, "handler_cancellation": False})


@pytest.fixture
async def served_node(tmp_path):
    settings = node_settings(tmp_path / "node", recording_segment_s=2.0)
    server = ServedAsInProduction(create_app(settings), host=settings.host)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        yield Node(server.app, server, session, settings)
    await server.close()


async def _play_url(node: Node, cid: str, seq: int = 0) -> tuple[str, str]:
    """(URL, segment id) of a fresh playback grant for one of the consultation's segments."""
    seg = (await closed_segments(node, cid))[seq]
    auditor = {"Authorization": f"Bearer {node.token(Role.AUDITOR, 'audit-1')}"}
    async with node.session.post(f"{node.url}/api/recordings/{cid}/segments/{seg.id}/access",
                                 headers=auditor) as r:
        return (await r.json())["url"], seg.id


def _request(method: str, target: str, *headers: str) -> bytes:
    return "\r\n".join([f"{method} {target} HTTP/1.1", "Host: node", *headers, "", ""]).encode()


async def _exchange(node: Node, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes on one connection; everything the node answers until it closes."""
    reader, writer = await asyncio.open_connection(node.server.host, node.server.port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def _responses(raw: bytes, methods: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a pipelined answer into (status, headers, body), one per request method: a HEAD's
    answer has no body whatever its Content-Length says; anything left over is an error."""
    out = []
    for method in methods:
        head, sep, raw = raw.partition(b"\r\n\r\n")
        assert sep, f"no complete answer to {method}: {head[:200]!r}"
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        body = b""
        if method != "HEAD":
            if "content-length" in headers:
                size = int(headers["content-length"])
                body, raw = raw[:size], raw[size:]
            elif headers.get("transfer-encoding") == "chunked":
                while True:
                    size_line, _, raw = raw.partition(b"\r\n")
                    size = int(size_line, 16)
                    body, raw = body + raw[:size], raw[size + 2:]
                    if size == 0:
                        break
        out.append((int(status_line.split()[1]), headers, body))
    assert raw == b"", f"bytes after the last answer: {raw[:80]!r}"
    return out


async def _kinds(node: Node, chain: str, kind: str) -> int:
    return sum(e.kind == kind for e in await node.ctx.events.events(chain))


async def test_head_on_media_sends_no_body_and_a_pipelined_get_is_answered(
        rec_node: Node, clips) -> None:
    node = rec_node
    cid = await recorded_call(node, clips, 1.0)
    url, _ = await _play_url(node, cid)
    raw = await _exchange(node, _request("HEAD", url, "Connection: close"))
    [(status, headers, _)] = _responses(raw, ["HEAD"])
    assert status == 405 and "GET" in headers["allow"]
    assert WEBM_MAGIC not in raw  # not a byte of the recording
    assert await _kinds(node, cid, "recording.access") == 0  # HEAD is no access

    raw = await _exchange(node, _request("HEAD", url) + _request(
        "GET", url, "Range: bytes=0-9", "Connection: close"))
    (head, _, _), (status, headers, body) = _responses(raw, ["HEAD", "GET"])
    assert head == 405
    assert status == 206 and body[:4] == WEBM_MAGIC and len(body) == 10
    assert await _kinds(node, cid, "recording.access") == 1  # the GET's


async def test_head_on_the_export_sends_no_body_writes_no_event_and_a_pipelined_get_is_answered(
        node: Node) -> None:
    booking = await node.book()
    target = f"/api/export/consultations?{around_today()}"
    auth = f"Authorization: Bearer {node.token(Role.REGULATOR, 'supervision-platform')}"
    raw = await _exchange(node, _request("HEAD", target, auth, "Connection: close"))
    [(status, _, _)] = _responses(raw, ["HEAD"])
    assert status == 405
    assert booking.consultation_id.encode() not in raw
    assert await _kinds(node, SYSTEM_CHAIN, "export.consultations") == 0

    raw = await _exchange(node, _request("HEAD", target, auth) + _request(
        "GET", target, auth, "Connection: close"))
    (head, _, _), (status, headers, body) = _responses(raw, ["HEAD", "GET"])
    assert head == 405
    assert status == 200 and headers["content-type"].startswith("application/x-ndjson")
    assert booking.consultation_id.encode() in body
    assert await _kinds(node, SYSTEM_CHAIN, "export.consultations") == 1


async def test_an_aborted_download_is_logged_at_info_not_error(
        served_node: Node, clips, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    node = served_node
    cid = await recorded_call(node, clips, 1.0)
    url, sid = await _play_url(node, cid)
    # A segment far bigger than what the sockets buffer, so the node is still writing when the
    # client goes: the segment's stored object is replaced by 16 MiB under the same key.
    seg = next(s for s in await closed_segments(node, cid) if s.id == sid)
    recorder = recorder_of(node)
    big = Path(tempfile.mkdtemp(dir=tmp_path)) / "big.webm"
    big.write_bytes(WEBM_MAGIC + bytes(16 * 1024 * 1024))
    stored = await asyncio.to_thread(store_blocking, big, seg.storage_key, recorder.storage,
                                     recorder.keys)
    # Its data key is in the index, beside the object (recorder/crypto.py).
    await index.set_wrapped_key(node.ctx.db, seg.id, seg.wrapped_key, stored.key_id,
                                stored.wrapped_key)

    caplog.set_level(logging.INFO)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (node.server.host, node.server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(_request("GET", url))
    await writer.drain()
    first = await asyncio.wait_for(reader.readexactly(64), 10)
    assert first.startswith(b"HTTP/1.1 200")
    # Gone, with a reset (unread bytes in the buffer), as a browser tab that is closed.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records
                if r.levelno >= logging.ERROR or r.name == "recorder.routes"]

    async def settled() -> bool:
        return bool(logged())

    await wait_for(settled, 10, "a log line about the aborted download")
    assert [(r.levelname, r.getMessage()) for r in logged()] == [
        ("INFO", f"download aborted by the client: recording segment {sid} of {cid}")]


# -- the server-sent event streams --------------------------------------------------------------

async def _until(node: Node, payload: bytes, marker: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes on one connection; what the node answers, up to `marker` (an endless
    stream does not close by itself)."""
    reader, writer = await asyncio.open_connection(node.server.host, node.server.port)
    try:
        writer.write(payload)
        await writer.drain()
        raw = b""
        async with asyncio.timeout(timeout):
            while marker not in raw:
                chunk = await reader.read(65536)
                assert chunk, f"closed before {marker!r}: {raw[-300:]!r}"
                raw += chunk
        return raw
    finally:
        writer.close()


async def _events(node: Node) -> int:
    """Every event of every chain."""
    async with node.ctx.db.session() as session:
        return (await session.scalar(select(func.count()).select_from(Event))) or 0


async def _head_then_get(node: Node, target: str, first_event: bytes) -> bytes:
    """HEAD alone is 405 with no stream; HEAD then a pipelined GET: the GET gets the stream."""
    raw = await _exchange(node, _request("HEAD", target, "Connection: close"))
    [(status, headers, _)] = _responses(raw, ["HEAD"])
    assert status == 405 and "GET" in headers["allow"], raw[:300]
    assert b"text/event-stream" not in raw and b"data:" not in raw
    raw = await _until(node, _request("HEAD", target) + _request("GET", target), first_event)
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 405"), raw[:300]
    assert b"data:" not in head
    assert rest.startswith(b"HTTP/1.1 200"), rest[:300]
    assert b"content-type: text/event-stream" in rest.lower()
    return rest


async def test_head_on_the_ops_stream_is_405_and_a_pipelined_get_gets_the_stream(
        node: Node) -> None:
    await node.book()
    target = f"/api/ops/stream?token={node.token(Role.OPS, 'ops-1')}"
    before = await _events(node)
    await _head_then_get(node, target, b'data: {"type": "snapshot"')
    assert await _events(node) == before


async def test_head_on_the_worklist_stream_is_405_writes_no_read_and_a_pipelined_get_does(
        node: Node) -> None:
    booking = await node.book()
    target = f"/api/worklist/stream?token={node.token(Role.DOCTOR_DAY, booking.doctor_id)}"
    await _head_then_get(node, target, b'data: {"type": "worklist"')
    reads = [e.data for e in await node.ctx.events.events(SYSTEM_CHAIN)
             if e.kind == "worklist.read"]
    assert reads == [{"how": "stream"}]  # the GET's; none for either HEAD


# -- no HEAD where a read is audited ---------------------------------------------------------------

async def test_no_route_that_audits_a_read_or_streams_answers_head(node: Node) -> None:
    """Found by behaviour, not by a list: every GET is made as every role with the ids of a real
    booking; a GET that appends an event is an audited read, and its route must refuse HEAD (as
    must every server-sent event stream, by its declaration)."""
    booking = await node.book()
    ids = {"cid": booking.consultation_id, "doctor_id": booking.doctor_id}
    queries = {"/api/reports/progress": "?month=2025-01", "/api/reports/progress.csv":
               "?month=2025-01", "/api/export/consultations": "?" + around_today()}
    heads = {r.resource.canonical for r in node.app.router.routes()
             if r.method == "HEAD" and r.resource is not None}
    audited: set[str] = set()
    for route in node.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        declaration = declared(route.handler)
        if route.method != "GET" or declaration is None or not declaration.roles:
            continue
        if declaration.events:
            assert path not in heads, f"HEAD {path}: a stream"
            continue
        url = node.url + path.format_map({**ids, "vid": "x_1", "sid": "x_1"}) + \
            queries.get(path, "")
        for role in declaration.roles:
            subject = {Role.DOCTOR: booking.doctor_id, Role.DOCTOR_DAY: booking.doctor_id,
                       Role.GUARDIAN: booking.guardian_id}.get(role, f"{role}-1")
            token = node.token(role, subject, booking.consultation_id
                               if role in BOUND_ROLES else None)
            before = await _events(node)
            async with node.session.get(url, headers={"Authorization": f"Bearer {token}"},
                                        timeout=aiohttp.ClientTimeout(total=10)) as r:
                await r.read()
                assert r.status < 500, (path, role, r.status)
            if await _events(node) > before:
                audited.add(path)
                assert path not in heads, f"HEAD {path}: a GET as {role} is audited"
    # What this walk reaches. Not reached, as they need data it does not make, and refused HEAD
    # by hand the same way: a referral, an enrolled photo, identity attempts and their evidence.
    assert audited >= {
        "/api/admin/doctors", "/api/admin/doctors/{doctor_id}", "/api/consent",
        "/api/consultations/{cid}/adverse-events", "/api/consultations/{cid}/events",
        "/api/consultations/{cid}/feedback", "/api/export/consultations",
        "/api/quality/adverse-events", "/api/quality/feedback", "/api/recordings",
        "/api/recordings/{cid}", "/api/recordings/{cid}/verify", "/api/reports/progress",
        "/api/reports/progress.csv", "/api/worklist"}
    for path in ("/api/consultations/{cid}/referral", "/api/admin/doctors/{doctor_id}/face",
                 "/api/consultations/{cid}/identity",
                 "/api/consultations/{cid}/identity/{vid}/evidence"):
        assert path not in heads, f"HEAD {path}: an audited read"
