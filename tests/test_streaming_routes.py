"""The two streaming routes (a recording's media, the regulator's export) over raw HTTP/1.1:
HEAD sends no body and leaves no audit trace, a GET pipelined after it is answered, and a
client that walks away in the middle of a download is an INFO line, not an ERROR (issue 17)."""

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

from recorder import index
from recorder.segment import store_blocking
from server.app import create_app
from server.auth import Role
from server.store import SYSTEM_CHAIN

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
