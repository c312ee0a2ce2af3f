"""signaling/room.py as a unit: joins, a rejoin that replaces a socket, leaving, the statuses and
what the other participant is told of each. Real node, real WebSockets, signaling only (media:
tests/test_reconnect.py; the grace period's end and emptied rooms: tests/test_room_lifecycle.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.client import CallClient
from core.auth import Role
from core.lifecycle import State
from signaling.protocol import ParticipantStatus
from signaling.room import Room
from signaling.server_messages import SERVER_MESSAGES

from .node_fixtures import Node
from .test_room_lifecycle import until


def documented(message: dict[str, Any]) -> dict[str, Any]:
    SERVER_MESSAGES.validate_python(message)
    return message


async def until_pong(client: CallClient, tag: str) -> list[dict[str, Any]]:
    """Every message the client gets before the answer to a ping sent now (none is skipped)."""
    await client.send({"type": "ping", "id": tag})
    seen = []
    while (message := await asyncio.wait_for(client.inbox.get(), 5))["type"] != "pong":
        seen.append(documented(message))
    assert message["re"] == tag
    return seen


def statuses(room: Room) -> dict[str, str]:
    return {str(role): p.status for role, p in room.participants.items()}


async def test_joins_list_who_is_not_there_yet_and_tell_the_other_side(node: Node) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    guardian = node.client(booking.guardian_link.split("#token=")[1])
    doctor = node.client(booking.doctor_link.split("#token=")[1])
    try:
        joined = documented(await guardian.connect())
        assert joined["rejoined"] is False
        assert joined["participants"] == [
            {"role": "doctor", "status": "absent", "ice": "new"},
            {"role": "guardian", "status": "connected", "ice": "new"}]
        room = node.rooms.get(cid)
        assert room is not None
        assert room.participants[Role.GUARDIAN].status is ParticipantStatus.CONNECTED
        assert room.participants[Role.DOCTOR].status is ParticipantStatus.ABSENT
        assert await node.ctx.lifecycle.state(cid) == State.WAITING

        joined = documented(await doctor.connect())
        assert [p["status"] for p in joined["participants"]] == ["connected", "connected"]
        assert documented(await guardian.expect("participant", role="doctor")) == {
            "type": "participant", "role": "doctor", "status": "connected", "ice": "new"}
        assert await node.ctx.lifecycle.state(cid) == State.VERIFYING
        assert node.rooms.participants(Role.DOCTOR) == 1
        assert node.rooms.participants(Role.GUARDIAN) == 1
    finally:
        await guardian.close()
        await doctor.close()
    kinds = [e["kind"] for e in await node.events(cid)]
    assert kinds.count("participant.joined") == 2 and "participant.rejoined" not in kinds


async def test_a_second_socket_replaces_the_first_and_the_other_side_sees_the_gap(
        node: Node) -> None:
    """Issue 11: back on a new socket before the old one was seen to drop (another window, a
    network change): the old socket is told and closed, the doctor sees the guardian lost and
    back, and a late loss report of the old socket changes nothing."""
    booking = await node.book()
    cid = booking.consultation_id
    token = booking.guardian_link.split("#token=")[1]
    first, doctor = node.client(token), node.client(booking.doctor_link.split("#token=")[1])
    second = node.client(token)
    try:
        await first.connect()
        await doctor.connect()
        room = node.rooms.get(cid)
        assert room is not None
        old_ws = room.participants[Role.GUARDIAN].ws
        assert old_ws is not None

        assert (await second.connect())["rejoined"] is True
        assert documented(await first.expect("error")) == {
            "type": "error", "code": "replaced",
            "message": "this participant joined from another connection"}
        assert (await first.expect("closed"))["code"] == 4001
        told = [m for m in await until_pong(doctor, "after") if m["type"] == "participant"]
        assert [(m["role"], m["status"]) for m in told] == [("guardian", "reconnecting"),
                                                           ("guardian", "connected")]

        await room.connection_lost(Role.GUARDIAN, old_ws, "the replaced socket, late")
        assert room.participants[Role.GUARDIAN].status is ParticipantStatus.CONNECTED
        assert room.participants[Role.GUARDIAN].grace is None
        assert await until_pong(doctor, "late") == []
        assert await until_pong(second, "still") == []
    finally:
        for client in (first, second, doctor):
            await client.close()
    events = [e for e in await node.events(cid) if e["kind"].startswith("participant.")]
    assert [e["kind"] for e in events] == ["participant.joined", "participant.joined",
                                           "participant.lost", "participant.rejoined"] + [
        e["kind"] for e in events[4:]]
    assert "new connection" in events[2]["data"]["reason"]


async def test_a_lost_socket_is_reconnecting_until_it_comes_back(node: Node) -> None:
    """Within the grace period the place is kept: the other side sees `reconnecting`, then
    `connected` again, and the grace timer is gone (it would make the participant `left`)."""
    booking = await node.book()
    cid = booking.consultation_id
    token = booking.guardian_link.split("#token=")[1]
    guardian, doctor = node.client(token), node.client(booking.doctor_link.split("#token=")[1])
    again = node.client(token)
    try:
        await guardian.connect()
        await doctor.connect()
        room = node.rooms.get(cid)
        assert room is not None
        await guardian.drop()
        await doctor.expect("participant", role="guardian", status="reconnecting")
        p = room.participants[Role.GUARDIAN]
        assert p.status is ParticipantStatus.RECONNECTING and p.ws is None
        grace = p.grace
        assert grace is not None and not grace.done()
        assert node.rooms.participants(Role.GUARDIAN) == 0

        assert (await again.connect())["rejoined"] is True
        assert node.rooms.get(cid) is room
        await doctor.expect("participant", role="guardian", status="connected")
        assert p.status is ParticipantStatus.CONNECTED and p.grace is None
        await until(grace.done, 5, lambda: grace)
        assert grace.cancelled()
    finally:
        for client in (guardian, again, doctor):
            await client.close()
    lost = next(e for e in await node.events(cid) if e["kind"] == "participant.lost")
    assert lost["data"]["grace_s"] == node.settings.rejoin_grace_s
    assert lost["data"]["reason"].startswith("websocket closed")


async def test_leaving_tells_the_other_side_and_the_last_one_out_closes_the_room(
        node: Node) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    guardian = node.client(booking.guardian_link.split("#token=")[1])
    doctor = node.client(booking.doctor_link.split("#token=")[1])
    try:
        await guardian.connect()
        await doctor.connect()
        room = node.rooms.get(cid)
        assert room is not None
        assert await node.ctx.lifecycle.state(cid) == State.VERIFYING

        await doctor.send({"type": "leave"})
        assert (await doctor.expect("closed"))["code"] == 1000
        await guardian.expect("participant", role="doctor", status="connected")
        assert documented(await guardian.expect("participant", role="doctor")) == {
            "type": "participant", "role": "doctor", "status": "left", "ice": "new"}
        # The doctor left before accepting: the consultation waits for a doctor again.
        await guardian.expect("state", state="waiting", previous="verifying")
        assert not room.closed and statuses(room) == {"doctor": "left",
                                                      "guardian": "connected"}
        assert node.rooms.participants(Role.DOCTOR) == 0
        assert node.rooms.participants(Role.GUARDIAN) == 1

        await guardian.send({"type": "leave"})
        assert (await guardian.expect("closed"))["code"] == 1000
        await until(lambda: room.closed, 5, lambda: statuses(room))
        assert node.rooms.get(cid) is None
        assert statuses(room) == {"doctor": "left", "guardian": "left"}
    finally:
        await guardian.close()
        await doctor.close()
    left = [e for e in await node.events(cid) if e["kind"] == "participant.left"]
    assert [(e["actor"].split(":")[0], e["data"]["reason"]) for e in left] == [
        ("doctor", "left"), ("guardian", "left")]

    await room.leave(Role.GUARDIAN, "again")  # one who has left cannot leave twice
    assert len([e for e in await node.events(cid) if e["kind"] == "participant.left"]) == 2
    assert await node.ctx.lifecycle.state(cid) == State.WAITING
