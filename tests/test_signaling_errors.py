"""Bad input on the WebSocket gets a clear error and the connection (and the call) stays up."""

from __future__ import annotations

import json

import aiohttp
import pytest

from core.auth import Role

from .node_fixtures import Node

BAD_MESSAGES = [
    ("not json at all", "bad_json", None),
    ("[1, 2, 3]", "bad_json", None),
    (json.dumps({"no": "type"}), "unknown_type", "type"),
    (json.dumps({"type": "dance"}), "unknown_type", "type"),
    (json.dumps({"type": "join", "protocol": "1"}), "bad_field", "protocol"),
    (json.dumps({"type": "join", "protocol": 2}), "bad_protocol", "protocol"),
    (json.dumps({"type": "offer"}), "bad_field", "sdp"),
    (json.dumps({"type": "offer", "sdp": "hello"}), "bad_field", "sdp"),
    (json.dumps({"type": "candidate", "candidate": 5}), "bad_field", "candidate"),
    (json.dumps({"type": "candidate", "candidate": {"candidate": "candidate:1 1 udp 1 "
                                                    "127.0.0.1 9 typ host"}}),
     "bad_field", "candidate"),
    (json.dumps({"type": "ping", "id": {"x": 1}}), "bad_field", "id"),
    (json.dumps({"type": "accept", "id": 3}), "bad_state", None),
]


async def test_malformed_messages_get_errors_and_socket_stays_up(node: Node) -> None:
    booking = await node.book()
    doctor = node.client(node.token(Role.DOCTOR, booking.doctor_id, booking.consultation_id))
    try:
        await doctor.connect()
        assert doctor.ws is not None
        for raw, code, field in BAD_MESSAGES:
            await doctor.ws.send_str(raw)
            error = await doctor.expect("error", timeout=5)
            assert error["code"] == code, (raw, error)
            assert error.get("field") == field, (raw, error)
            assert error["message"]
        # Oversized (over the 64 KiB limit, under aiohttp's hard 1 MiB cap): refused, not closed.
        await doctor.ws.send_str(json.dumps({"type": "offer", "sdp": "v=0" + "a" * 70_000}))
        assert (await doctor.expect("error"))["code"] == "too_large"
        await doctor.send({"type": "ping", "id": "still-here"})
        assert (await doctor.expect("pong"))["re"] == "still-here"
    finally:
        await doctor.close()
    refused = [e for e in await node.events(booking.consultation_id)
               if e["kind"] == "signaling.refused"]
    assert len(refused) == len(BAD_MESSAGES) + 1
    assert {e["data"]["code"] for e in refused} >= {"bad_json", "too_large", "unknown_type"}


async def test_messages_before_join_and_guardian_end_refused(node: Node) -> None:
    booking = await node.book()
    guardian = node.client(node.token(Role.GUARDIAN, booking.guardian_id, booking.consultation_id))
    try:
        ws_url = node.url.replace("http", "ws") + "/ws"
        async with node.session.ws_connect(ws_url, params={"token": guardian.token}) as ws:
            await ws.send_json({"type": "offer", "sdp": "v=0\r\n"})
            reply = await ws.receive_json(timeout=5)
            assert reply["code"] == "not_joined"
        await guardian.connect()
        await guardian.send({"type": "end"})
        error = await guardian.expect("error")
        assert error["code"] == "forbidden"
        await guardian.send({"type": "offer", "sdp": "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\n"})
        assert (await guardian.expect("error"))["code"] == "bad_sdp"
    finally:
        await guardian.close()


async def _ws_status(node: Node, token: str | None) -> tuple[int, dict]:
    params = {"token": token} if token is not None else {}
    async with node.session.get(node.url + "/ws", params=params,
                                headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                         "Sec-WebSocket-Version": "13",
                                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
        return r.status, await r.json()


async def test_tokens_checked_before_upgrade(node: Node) -> None:
    booking = await node.book()
    other = await node.book()
    cid = booking.consultation_id
    cases = [
        (None, 401, "no_token"),
        ("not-a-jwt", 401, "bad_token"),
        (node.token(Role.DOCTOR, booking.doctor_id, cid, ttl=-10), 401, "bad_token"),
        (node.token(Role.AUDITOR, "a1"), 403, "wrong_role"),
        (node.token(Role.GUARDIAN, booking.doctor_id, cid), 403, "not_a_participant"),
        (node.token(Role.DOCTOR, other.doctor_id, cid), 403, "not_a_participant"),
    ]
    for token, status, code in cases:
        got_status, body = await _ws_status(node, token)
        assert (got_status, body["error"]["code"]) == (status, code), token
    _, body = await _ws_status(node, cases[2][0])
    assert "expired" in body["error"]["message"]
    # A token signed with another secret is refused too.
    from core.auth import Tokens
    forged = Tokens("another-secret-" + "y" * 40, 60).issue(Role.DOCTOR, booking.doctor_id, cid)
    assert (await _ws_status(node, forged))[0] == 401


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.OPS, Role.ADMIN])
async def test_api_me_needs_a_call_role(node: Node, role: Role) -> None:
    async with node.session.get(node.url + "/api/me", headers={
            "Authorization": f"Bearer {node.token(role, 'someone')}"}) as r:
        assert r.status == 403
        assert (await r.json())["error"]["code"] == "wrong_role"


async def test_api_me_and_events_route(node: Node) -> None:
    booking = await node.book()
    token = booking.guardian_link.split("#token=")[1]
    async with node.session.get(node.url + "/api/me",
                                headers={"Authorization": f"Bearer {token}"}) as r:
        body = await r.json()
        assert r.status == 200 and body["consultation"]["id"] == booking.consultation_id
    events_url = f"{node.url}/api/consultations/{booking.consultation_id}/events"
    async with node.session.get(events_url, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 403
    other = await node.book()
    doctor_elsewhere = node.token(Role.DOCTOR, other.doctor_id, other.consultation_id)
    async with node.session.get(events_url,
                                headers={"Authorization": f"Bearer {doctor_elsewhere}"}) as r:
        assert r.status == 403 and (await r.json())["error"]["code"] == "wrong_consultation"
    auditor = node.token(Role.AUDITOR, "auditor-1")
    async with node.session.get(events_url,
                                headers={"Authorization": f"Bearer {auditor}"}) as r:
        body = await r.json()
        assert r.status == 200 and body["chain"]["ok"]
    assert (await node.events(booking.consultation_id))[-1]["kind"] == "audit.read"


async def test_unauthenticated_http_gets_json_401(node: Node) -> None:
    async with aiohttp.ClientSession() as s, s.get(node.url + "/api/me") as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == "no_token"


async def test_join_carries_a_bounded_downlink_where_the_node_starts_its_video(node: Node) -> None:
    """`join.downlink_kbps`: an integer 1..10,000,000, or absent; anything else is refused with a
    `bad_field` naming it and no join; a good one sets where this receiver's video starts."""
    booking = await node.book()
    cid = booking.consultation_id
    token = node.token(Role.DOCTOR, booking.doctor_id, cid)
    async with node.session.ws_connect(node.url.replace("http", "ws") + "/ws",
                                       params={"token": token}) as ws:
        for bad in ("300", 0, -5, 300.5, True, 10_000_001, [300]):
            await ws.send_json({"type": "join", "protocol": 1, "downlink_kbps": bad})
            error = await ws.receive_json(timeout=5)
            assert error["type"] == "error" and error["code"] == "bad_field", (bad, error)
            assert error["field"] == "downlink_kbps" and "downlink_kbps" in error["message"], \
                (bad, error)
        assert node.rooms.get(cid) is None  # none of them joined
        await ws.send_json({"type": "join", "protocol": 1, "downlink_kbps": 300})
        await _until_joined(ws)
        room = node.rooms.get(cid)
        assert room is not None
        assert room.participants[Role.DOCTOR].link.start_bps == 210_000  # 0.7 of 300 kbit/s
        await ws.send_json({"type": "join", "protocol": 1})  # a rejoin that measured nothing
        await _until_joined(ws)
        assert room.participants[Role.DOCTOR].link.start_bps == 800_000


async def _until_joined(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Past the node's own messages (`state`, `participant`) to `joined`; an error fails."""
    for _ in range(10):
        reply = await ws.receive_json(timeout=5)
        assert reply["type"] != "error", reply
        if reply["type"] == "joined":
            return
    raise AssertionError("no `joined` within 10 messages")
