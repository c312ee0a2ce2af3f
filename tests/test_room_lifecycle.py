"""Issue 17, finding 1: a room that empties out is closed (its tasks, its peers), not only
forgotten; a participant coming back gets a new one. Real node, real WebSocket clients."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from bench.client import CallClient
from bench.faces import OBAMA
from core.auth import Role
from core.lifecycle import State
from identity.doctor.registry_api import IDENTITY_KEY
from identity.guardian.presence_policy import Change
from signaling import handler
from signaling.room import Room

from .node_fixtures import Node
from .presence_fixtures import enroll_guardian_photo, presence_node, presence_service

CYCLES = 60


async def until(check: Callable[[], bool], timeout: float, what: Callable[[], object]) -> None:
    """Poll `check` (the node works in its own tasks after a socket closes) for `timeout` s."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.05)


def room_tasks(cid: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == f"stats-{cid}" and not t.done()]


def rooms_in_memory(node: Node) -> list[Room]:
    gc.collect()  # a closed room may sit in a reference cycle until the next collection
    return [o for o in gc.get_objects() if isinstance(o, Room) and o.ctx is node.ctx]


def leftovers(node: Node, cid: str) -> dict[str, object]:
    return {"registered": node.rooms.ids(), "stats tasks": len(room_tasks(cid)),
            "rooms in memory": [(r.consultation_id, r.closed) for r in rooms_in_memory(node)]}


def gone(node: Node, cid: str) -> bool:
    return len(node.rooms) == 0 and not room_tasks(cid) and not rooms_in_memory(node)


async def join_and_leave(client: CallClient) -> None:
    await client.send({"type": "leave"})
    await client.expect("closed", timeout=10)
    await client.close()


async def test_rooms_everyone_left_are_closed_over_many_cycles(node: Node) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    guardian_token = booking.guardian_link.split("#token=")[1]
    doctor_token = booking.doctor_link.split("#token=")[1]
    rooms_seen: set[int] = set()
    for _ in range(CYCLES):
        guardian, doctor = node.client(guardian_token), node.client(doctor_token)
        await guardian.connect()
        await doctor.connect()
        room = node.rooms.get(cid)
        assert room is not None and len(room_tasks(cid)) == 1
        rooms_seen.add(id(room))
        await join_and_leave(doctor)
        await join_and_leave(guardian)
        # The node closes the socket before it is done with the departure: a join sent at once
        # would still find this room (and keep it, a rejoin).
        await until(lambda: node.rooms.get(cid) is None, 10, lambda: leftovers(node, cid))
        del room
    assert len(rooms_seen) > 1  # a new room each cycle (ids of freed objects may come back)
    await until(lambda: gone(node, cid), 10, lambda: leftovers(node, cid))
    # Their closed sockets are freed at once, not held ~22 s more by a re-armed heartbeat.
    await until(lambda: gc.collect() >= 0 and not handler._SOCKETS, 5,
                lambda: f"{len(handler._SOCKETS)} closed call sockets still in memory")
    # The consultation is not over: the doctor left before accepting, it waits again.
    assert await node.ctx.lifecycle.state(cid) == State.WAITING
    kinds = [e["kind"] for e in await node.events(cid)]
    assert kinds.count("participant.left") == 2 * CYCLES
    assert (await node.ctx.events.verify(cid)).ok


async def test_finished_call_sockets_and_rooms_are_freed_without_the_collector(node: Node) -> None:
    """Issue 17's soak: 230-340 closed call sockets sat in memory throughout, each freed only by
    a full collection, held in reference cycles (aiohttp's protocol keeps the socket's data
    callback; a closed room's cancelled statistics task keeps the room through its traceback).
    With the collector off, reference counting alone must free them, and their rooms."""
    booking = await node.book()
    cid = booking.consultation_id
    guardian_token = booking.guardian_link.split("#token=")[1]
    doctor_token = booking.doctor_link.split("#token=")[1]
    sockets: list[weakref.ref[object]] = []
    rooms: list[weakref.ref[Room]] = []

    def alive() -> dict[str, object]:
        left = {id(ws): ws for ws in (r() for r in sockets) if ws is not None}
        return {"call sockets alive": len(left),
                "closed": sum(ws.closed for ws in left.values()),
                "held by": sorted({type(o).__name__ for ws in left.values()
                                   for o in gc.get_referrers(ws) if o is not left}),
                "rooms alive": sum(r() is not None for r in rooms)}

    gc.collect()
    gc.disable()
    try:
        for _ in range(10):
            guardian, doctor = node.client(guardian_token), node.client(doctor_token)
            await guardian.connect()
            await doctor.connect()
            sockets.extend(weakref.ref(ws) for ws in handler._SOCKETS)
            room = node.rooms.get(cid)
            assert room is not None
            rooms.append(weakref.ref(room))
            del room
            await join_and_leave(doctor)
            await join_and_leave(guardian)
            await until(lambda: node.rooms.get(cid) is None, 10,
                        lambda: leftovers(node, cid))
        assert len({id(r) for r in sockets}) >= 20
        await until(lambda: all(r() is None for r in [*sockets, *rooms]), 10, alive)
    finally:
        gc.enable()


async def test_sockets_that_vanish_during_their_join_leave_no_room(node: Node) -> None:
    """A hostile client: `join`, then gone before the answer, over and over. Whether the socket
    went before or after the node made it `connected`, the room is closed in the end."""
    booking = await node.book()
    cid = booking.consultation_id
    ws_url = node.url.replace("http", "ws") + "/ws"
    for i in range(CYCLES // 2):
        token = booking.guardian_link.split("#token=")[1] if i % 2 else node.token(
            Role.DOCTOR, booking.doctor_id, cid)
        ws = await node.session.ws_connect(ws_url, params={"token": token})
        await ws.send_json({"type": "join", "protocol": 1})
        await ws.close()
    await until(lambda: gone(node, cid), node.settings.rejoin_grace_s + 10,
                lambda: leftovers(node, cid))


async def test_a_lone_participant_keeps_the_room_for_the_grace_period_only(node: Node,
                                                                          clips) -> None:
    """A vanished participant's room waits for it (reconnect), and is closed once its grace
    period runs out; it can still come back afterwards, to a new room."""
    booking = await node.book()
    cid = booking.consultation_id
    token = booking.guardian_link.split("#token=")[1]
    guardian = node.client(token, clips)
    await guardian.connect()
    await guardian.start_media()
    await guardian.wait_connected()
    room = node.rooms.get(cid)
    assert room is not None
    peer = room.participants[Role.GUARDIAN].peer
    assert peer is not None

    await guardian.drop()  # within the grace period: the same room, a rejoin
    await until(lambda: room.participants[Role.GUARDIAN].status == "reconnecting", 10,
                lambda: room.participants[Role.GUARDIAN].public())
    again = node.client(token, clips)
    assert (await again.connect())["rejoined"] is True
    assert node.rooms.get(cid) is room and not room.closed
    await again.start_media()
    await again.wait_connected()
    assert peer.pc.connectionState == "closed"  # the first peer, replaced at the rejoin
    peer = room.participants[Role.GUARDIAN].peer
    assert peer is not None

    await again.drop()  # now for good: closed when the grace period ends
    await until(lambda: room.closed, node.settings.rejoin_grace_s + 10,
                lambda: room.participants[Role.GUARDIAN].public())
    assert peer.pc.connectionState == "closed"
    room = peer = None  # type: ignore[assignment]  # only the node may hold them now
    await until(lambda: gone(node, cid), 10, lambda: leftovers(node, cid))
    left = [e for e in await node.events(cid) if e["kind"] == "participant.left"]
    assert "grace" in left[-1]["data"]["reason"]

    late = node.client(token)
    joined = await late.connect()
    assert joined["rejoined"] is False and joined["consultation"]["state"] == "waiting"
    assert node.rooms.get(cid) is not None and len(room_tasks(cid)) == 1
    await join_and_leave(late)
    await until(lambda: gone(node, cid), 10, lambda: leftovers(node, cid))


async def test_presence_monitor_ends_with_the_emptied_room_and_resumes(tmp_path: Path) -> None:
    """Guardian presence (issue 4) watched the closed room's video: it stops with it, and starts
    again on the new room when the guardian is back."""
    async with presence_node(tmp_path) as node:
        booking = await node.book()
        cid = booking.consultation_id
        resp = await enroll_guardian_photo(node, booking.guardian_id, OBAMA)
        assert resp.status == 200, await resp.text()
        svc = presence_service(node)
        token = booking.guardian_link.split("#token=")[1]

        guardian = node.client(token)
        await guardian.connect()
        first = node.rooms.get(cid)
        await until(lambda: cid in svc.monitors, 10, lambda: svc.monitors)
        assert svc.monitors[cid].room is first
        task = svc.monitors[cid].task
        del first
        await join_and_leave(guardian)
        await until(lambda: cid not in svc.monitors and task.done(), 10,
                    lambda: (svc.monitors, task))
        await until(lambda: gone(node, cid), 10, lambda: leftovers(node, cid))

        guardian = node.client(token)
        await guardian.connect()
        await until(lambda: cid in svc.monitors, 10, lambda: svc.monitors)
        assert svc.monitors[cid].room is node.rooms.get(cid)
        assert not svc.monitors[cid].task.done()
        await join_and_leave(guardian)
        await until(lambda: cid not in svc.monitors, 10, lambda: svc.monitors)

        events = [e for e in await node.events(cid) if e["kind"].startswith("guardian.presence.")]
        assert [e["kind"] for e in events] == ["guardian.presence.started",
                                               "guardian.presence.stopped"] * 2, events
        assert events[1]["data"]["reason"] == "every participant left"


def kept_for(service: object, cid: str) -> list[str]:
    """The service's collections that still name the consultation (keys or members)."""
    return [name for name, value in vars(service).items()
            if isinstance(value, dict | set | frozenset) and cid in value]


async def test_presence_and_identity_keep_nothing_of_an_ended_consultation(
        tmp_path: Path) -> None:
    """Per-consultation state of the services goes with the consultation: the presence service
    kept every change's wall-clock time per consultation (read by nothing), for ever."""
    async with presence_node(tmp_path) as node:
        booking = await node.book()
        cid = booking.consultation_id
        svc = presence_service(node)
        identity = node.app[IDENTITY_KEY]
        guardian = node.client(booking.guardian_link.split("#token=")[1])
        await guardian.connect()
        room = node.rooms.get(cid)
        assert room is not None
        monitor = SimpleNamespace(cid=cid, room=room)  # on_change reads only these
        await svc.on_change(monitor, Change("present", time.monotonic(), "unknown", 0.0, 1,
                                            0.3, 2))  # type: ignore[arg-type]
        await guardian.expect("presence", timeout=5, guardian="present")
        await node.ctx.lifecycle.transition(cid, State.ABORTED, "system", "test: over")
        await until(lambda: room.closed, 10, lambda: leftovers(node, cid))
        assert kept_for(svc, cid) == [] and kept_for(identity, cid) == []
        await guardian.close()
