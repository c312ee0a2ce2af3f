"""Issue 11: the pre-call connection test endpoint is the participant's only, bounded and
rate-limited, and measures what it says."""

from __future__ import annotations

import asyncio

import aiohttp

from server import precall
from server.auth import Role
from server.lifecycle import State

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


async def test_unexpected_or_oversized_input_closes_the_probe(node: Node) -> None:
    booking = await node.book()
    token = node.token(Role.DOCTOR, booking.doctor_id, booking.consultation_id)
    async with node.session.ws_connect(_url(node), params={"token": token}) as ws:
        await ws.send_json({"type": "download_forever"})
        frame = await ws.receive(timeout=5)
        assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1008
    async with node.session.ws_connect(_url(node), params={"token": token}) as ws:
        for _ in range(precall.UPLOAD_BYTES // precall.CHUNK_BYTES + 1):
            await ws.send_bytes(b"\0" * precall.CHUNK_BYTES)
        frame = await ws.receive(timeout=5)
        assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == 1009


def test_limiter_forgets_participants_whose_window_passed() -> None:
    limiter = precall.ProbeLimiter(per_window=1, window_s=10.0)
    for i in range(1001):
        assert limiter.start(f"p{i}", now=0.0) is None
        limiter.finish(f"p{i}")
    assert limiter.start("p0", now=5.0) is not None  # still within its window
    assert limiter.start("late", now=20.0) is None
    assert set(limiter.started) == {"late"}
