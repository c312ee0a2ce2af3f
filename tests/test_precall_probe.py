"""Issue 11: the pre-call connection test endpoint is the participant's only, bounded and
rate-limited, and measures what it says."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from core.auth import Role
from core.lifecycle import State
from server import precall
from server.precall_messages import MAX_TEXT_BYTES, PROBE_REPLIES

from .node_fixtures import Node


def _url(node: Node) -> str:
    return node.url.replace("http", "ws", 1) + "/api/precall/probe"


async def _status(node: Node, token: str | None) -> int:
    params = {"token": token} if token is not None else {}
    try:
        async with node.session.ws_connect(_url(node), params=params):
            return 101
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


async def _status_once_free(node: Node, token: str, timeout: float = 5.0) -> int:
    """The server frees a probe's slot just after the client sees the close: poll, bounded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (status := await _status(node, token)) == 429:
        assert asyncio.get_running_loop().time() < deadline, f"still 429 after {timeout} s"
        await asyncio.sleep(0.02)
    return status


async def test_only_a_participant_of_a_live_consultation_may_probe(node: Node) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    assert await _status(node, None) == 401
    assert await _status(node, "not-a-token") == 401
    assert await _status(node, node.token(Role.OPS, "ops-1")) == 403
    assert await _status(node, node.token(Role.GUARDIAN, "someone-else", cid)) == 403
    assert await _status(node, node.token(Role.DOCTOR, booking.doctor_id, cid)) == 101
    await node.ctx.lifecycle.transition(cid, State.ABORTED, "system", "test: over")
    assert await _status(node, node.token(Role.DOCTOR, booking.doctor_id, cid)) == 409


async def test_probe_measures_round_trip_download_and_upload_within_its_caps(node: Node) -> None:
    booking = await node.book()
    token = node.token(Role.GUARDIAN, booking.guardian_id, booking.consultation_id)
    async with node.session.ws_connect(_url(node), params={"token": token}) as ws:
        for n in range(3):
            await ws.send_json({"type": "ping", "n": n})
            assert await ws.receive_json(timeout=5) == {"type": "pong", "n": n}
        await ws.send_json({"type": "download"})
        received = 0
        while True:
            frame = await ws.receive(timeout=10)
            if frame.type == aiohttp.WSMsgType.BINARY:
                received += len(frame.data)
                continue
            done = frame.json()
            break
        assert done["type"] == "downloaded" and done["bytes"] == received
        assert 0 < received <= precall.DOWNLOAD_BYTES
        assert done["seconds"] <= precall.DOWNLOAD_S + 1
        for _ in range(8):
            await ws.send_bytes(b"\0" * precall.CHUNK_BYTES)
        await ws.send_json({"type": "uploaded"})
        result = await ws.receive_json(timeout=10)
        assert result["type"] == "upload_result"
        assert result["bytes"] == 8 * precall.CHUNK_BYTES
        assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE,
                                                       aiohttp.WSMsgType.CLOSED)


async def test_probe_cannot_be_run_in_parallel_or_too_often(node: Node) -> None:
    booking = await node.book()
    token = node.token(Role.GUARDIAN, booking.guardian_id, booking.consultation_id)
    for method in ("GET", "HEAD") * precall.PROBES_PER_WINDOW:  # no upgrade: refused, not counted
        async with node.session.request(method, _url(node), params={"token": token}) as r:
            assert r.status == 400, (method, r.status)
            if method == "GET":
                assert (await r.json())["error"]["code"] == "websocket_expected"
    async with node.session.ws_connect(_url(node), params={"token": token}) as ws:
        assert await _status(node, token) == 429  # one at a time per participant
        await ws.send_json({"type": "ping", "n": 1})
        await ws.receive_json(timeout=5)
    # The first probe's slot is freed when its socket closes; the window still counts it.
    for _ in range(precall.PROBES_PER_WINDOW - 1):
        assert await _status_once_free(node, token) == 101
    assert await _status(node, token) == 429
    async with node.session.get(node.url + "/api/precall/probe",
                                params={"token": token},
                                headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                         "Sec-WebSocket-Version": "13",
                                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
        body = await r.json()
        assert r.status == 429 and body["error"]["code"] == "rate_limited", body
        assert r.headers["Retry-After"]
    # Other participants are not affected.
    doctor = node.token(Role.DOCTOR, booking.doctor_id, booking.consultation_id)
    assert await _status(node, doctor) == 101


async def test_oversized_upload_or_frame_closes_the_probe(node: Node) -> None:
    booking = await node.book()
    token = node.token(Role.DOCTOR, booking.doctor_id, booking.consultation_id)
    async with node.session.ws_connect(_url(node), params={"token": token}) as ws:
        for _ in range(precall.UPLOAD_BYTES // precall.CHUNK_BYTES + 1):
            await ws.send_bytes(b"\0" * precall.CHUNK_BYTES)
        frame = await ws.receive(timeout=5)
        assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1009
    async with node.session.ws_connect(_url(node), params={"token": token}) as ws:
        await ws.send_str('{"type": "ping", "pad": "' + "x" * 2 * precall.CHUNK_BYTES + '"}')
        frame = await ws.receive(timeout=5)
        assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1009


# -- hostile text frames (issue 17): an `error` reply, the probe goes on, nothing logged ---------

@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.WARNING)
    yield
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@asynccontextmanager
async def _probe(node: Node) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    booking = await node.book()
    token = node.token(Role.GUARDIAN, booking.guardian_id, booking.consultation_id)
    async with node.session.ws_connect(_url(node), params={"token": token}) as ws:
        yield ws


async def _reply(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next message, which must be a documented reply (server/precall_messages.py)."""
    frame = await ws.receive(timeout=5)
    assert frame.type == aiohttp.WSMsgType.TEXT, (frame.type, frame.data, frame.extra)
    message = frame.json()
    PROBE_REPLIES.validate_python(message)
    return message


async def _refused(ws: aiohttp.ClientWebSocketResponse, frame: str, code: str) -> dict[str, Any]:
    """`frame` gets an `error` with `code`, and the probe still answers a ping."""
    await ws.send_str(frame)
    reply = await _reply(ws)
    assert reply["type"] == "error" and reply["code"] == code, (frame[:60], reply)
    await ws.send_json({"type": "ping", "n": 7})
    assert await _reply(ws) == {"type": "pong", "n": 7}
    return reply


@pytest.mark.usefixtures("no_errors_logged")
async def test_deep_json_is_refused_and_the_probe_goes_on(node: Node) -> None:
    async with _probe(node) as ws:
        await _refused(ws, "[" * 50_000, "too_large")  # the audit's frame: refused by its size
        reply = await _refused(ws, "[" * 1000, "bad_json")  # deep within the size limit
        assert "not valid JSON" in reply["message"]
        await _refused(ws, '{"type": "ping", "n": ' + "[" * 300 + "]" * 300 + "}", "bad_json")
        await _refused(ws, '{"":' * 203 + "1" + "}" * 203, "bad_json")  # 1,016 bytes


@pytest.mark.usefixtures("no_errors_logged")
async def test_lone_surrogate_is_refused(node: Node) -> None:
    async with _probe(node) as ws:
        await _refused(ws, '{"type": "ping", "n": 1, "note": "\\ud800"}', "bad_json")
        await _refused(ws, '{"type": "\\udfff"}', "bad_json")


@pytest.mark.usefixtures("no_errors_logged")
async def test_unknown_or_missing_type_is_refused(node: Node) -> None:
    async with _probe(node) as ws:
        reply = await _refused(ws, '{"type": "download_forever"}', "unknown_type")
        assert reply["field"] == "type" and "download_forever" in reply["message"]
        assert (await _refused(ws, '{"n": 1}', "unknown_type"))["field"] == "type"
        await _refused(ws, '{"type": null}', "unknown_type")


@pytest.mark.usefixtures("no_errors_logged")
async def test_oversized_text_frame_is_refused(node: Node) -> None:
    async with _probe(node) as ws:
        padded = '{"type": "ping", "n": 1, "pad": "' + "x" * MAX_TEXT_BYTES + '"}'
        reply = await _refused(ws, padded, "too_large")
        assert str(MAX_TEXT_BYTES) in reply["message"]


@pytest.mark.usefixtures("no_errors_logged")
async def test_non_json_or_bad_fields_are_refused(node: Node) -> None:
    async with _probe(node) as ws:
        await _refused(ws, "hello", "bad_json")
        await _refused(ws, '{"type": "ping"', "bad_json")
        assert "object" in (await _refused(ws, "[1, 2]", "bad_json"))["message"]
        for n in ('"1"', "true", "-1", "1.5", str(10**30)):
            reply = await _refused(ws, '{"type": "ping", "n": ' + n + "}", "bad_field")
            assert reply["field"] == "n", reply


@pytest.mark.usefixtures("no_errors_logged")
async def test_more_than_the_caps_is_refused_with_limit(node: Node,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precall, "DOWNLOAD_BYTES", 2 * precall.CHUNK_BYTES)
    async with _probe(node) as ws:
        for n in range(precall.MAX_PINGS):
            await ws.send_json({"type": "ping", "n": n})
            assert await _reply(ws) == {"type": "pong", "n": n}
        await ws.send_json({"type": "ping"})
        assert (await _reply(ws))["code"] == "limit"
        await ws.send_json({"type": "download"})
        while (frame := await ws.receive(timeout=5)).type == aiohttp.WSMsgType.BINARY:
            pass
        assert PROBE_REPLIES.validate_python(frame.json()).type == "downloaded"
        await ws.send_json({"type": "download"})
        assert (await _reply(ws))["code"] == "limit"
        await ws.send_json({"type": "uploaded"})
        assert (await _reply(ws)) == {"type": "upload_result", "bytes": 0, "seconds": 0.0}


def test_limiter_forgets_participants_whose_window_passed() -> None:
    limiter = precall.ProbeLimiter(per_window=1, window_s=10.0)
    for i in range(1001):
        assert limiter.start(f"p{i}", now=0.0) is None
        limiter.finish(f"p{i}")
    assert limiter.start("p0", now=5.0) is not None  # still within its window
    assert limiter.start("late", now=20.0) is None
    assert set(limiter.started) == {"late"}
