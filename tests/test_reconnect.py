"""A participant vanishes mid-call: the other stays connected; rejoin within the grace period."""

from __future__ import annotations

import asyncio
import sys
import time

from bench.client import CallClient
from core.lifecycle import State

from .clinical_helpers import active_call
from .node_fixtures import Node
from .node_process import ROOT


async def _guardian_lost_doctor_stays(node: Node, cid: str, doctor: CallClient) -> None:
    """The guardian is `reconnecting`; the doctor's socket answers and its media is still up."""
    await doctor.expect("participant", role="guardian", status="reconnecting")
    await doctor.send({"type": "ping", "id": 1})
    await doctor.expect("pong")
    assert doctor.pc is not None and doctor.pc.connectionState == "connected"
    assert await node.ctx.lifecycle.state(cid) == State.ACTIVE


async def test_guardian_process_killed_mid_call_the_doctor_stays(node: Node, clips) -> None:
    """The guardian's browser dies (SIGKILL: no close frame, no DTLS close). The doctor's call
    stays up, the guardian is `reconnecting` for the grace period, and the log says so."""
    booking = await node.book()
    cid = booking.consultation_id
    doctor = node.client(booking.doctor_link.split("#token=")[1], clips)
    guardian = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.vanishing_client", node.url,
        booking.guardian_link.split("#token=")[1],
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert guardian.stdout is not None
    try:
        await doctor.connect()
        await doctor.start_media()
        await doctor.expect("consent", timeout=30, given=True)
        ready = await asyncio.wait_for(guardian.stdout.readline(), 30)
        assert ready.strip() == b"ready", ready
        await doctor.send({"type": "accept"})
        await doctor.expect("state", state="active")
        guardian.kill()
        await asyncio.wait_for(guardian.wait(), 5)
        await _guardian_lost_doctor_stays(node, cid, doctor)
    finally:
        if guardian.returncode is None:
            guardian.kill()
            await asyncio.wait_for(guardian.wait(), 5)
        await doctor.close()
    kinds = [e["kind"] for e in await node.events(cid)]
    assert "participant.lost" in kinds and "recording.started" in kinds, kinds


async def test_vanished_guardian_rejoins_within_grace(node: Node, clips) -> None:
    booking, guardian, doctor = await active_call(node, clips)
    cid = booking.consultation_id
    try:
        await guardian.drop()
        await _guardian_lost_doctor_stays(node, cid, doctor)

        again = node.client(guardian.token, clips)
        joined = await again.connect()
        assert joined["rejoined"] is True and joined["consultation"]["state"] == "active"
        await again.start_media()
        await doctor.expect("participant", role="guardian", status="connected")
        # Media flows both ways again, starting from a key frame.
        before = doctor.received["video"].frames
        await again.wait_frames("video", 15)
        await doctor.wait_frames("video", 15)
        assert again.received["video"].keyframes >= 1
        assert doctor.received["video"].frames > before
        await again.close()
    finally:
        await doctor.close()
    kinds = [e["kind"] for e in await node.events(cid)]
    assert "participant.lost" in kinds, "\n".join(kinds)
    assert kinds.index("participant.lost") < kinds.index("participant.rejoined")
    assert await node.ctx.lifecycle.state(cid) != State.ENDED


async def test_media_lost_with_the_socket_up_is_a_reconnect(node: Node, clips) -> None:
    """The guardian's peer connection goes away but its socket stays: same grace period; a new
    offer on the same socket restores the media and the participant."""
    booking, guardian, doctor = await active_call(node, clips)
    cid = booking.consultation_id
    try:
        assert guardian.pc is not None
        await guardian.pc.close()  # the page's RTCPeerConnection is gone, its socket is not
        await guardian.expect("notice", code="ice_failed")
        await doctor.expect("participant", role="guardian", status="reconnecting")
        assert await node.ctx.lifecycle.state(cid) == State.ACTIVE
        await guardian.start_media()  # a new offer on the same socket
        await doctor.expect("participant", role="guardian", status="connected")
        await guardian.wait_frames("video", 15)
        await doctor.wait_frames("video", 15)
    finally:
        await guardian.close()
        await doctor.close()
    events = await node.events(cid)
    kinds = [e["kind"] for e in events]
    assert kinds.index("participant.lost") < kinds.index("participant.media_restored"), kinds
    lost = next(e for e in events if e["kind"] == "participant.lost")
    assert lost["data"]["reason"] == "media connection closed"
    assert "participant.rejoined" not in kinds


async def test_vanished_guardian_gone_after_grace_doctor_stays(node: Node, clips) -> None:
    booking, guardian, doctor = await active_call(node, clips)
    cid = booking.consultation_id
    try:
        await guardian.drop()
        started = time.monotonic()
        await doctor.expect("participant", role="guardian", status="reconnecting")
        left = await doctor.expect("participant", role="guardian", status="left", timeout=10)
        waited = time.monotonic() - started
        assert left["status"] == "left"
        assert waited >= node.settings.rejoin_grace_s * 0.9
        assert doctor.pc is not None and doctor.pc.connectionState == "connected"
        assert await node.ctx.lifecycle.state(cid) == State.ACTIVE
        await doctor.send({"type": "end", "reason": "patient did not return"})
        await doctor.expect("state", state="ended")
    finally:
        await doctor.close()
    events = await node.events(cid)
    gone = [e for e in events if e["kind"] == "participant.left"]
    assert gone and "grace" in gone[0]["data"]["reason"]
    assert (await node.ctx.events.verify(cid)).ok


async def test_everyone_gone_aborts_active_consultation(node: Node, clips) -> None:
    booking, guardian, doctor = await active_call(node, clips)
    await guardian.drop()
    await doctor.send({"type": "leave"})
    await doctor.expect("closed")
    await doctor.close()
    cid = booking.consultation_id
    deadline = time.monotonic() + node.settings.rejoin_grace_s + 5
    while await node.ctx.lifecycle.state(cid) != State.ABORTED:
        assert time.monotonic() < deadline, await node.events(cid)
        await __import__("asyncio").sleep(0.1)
    assert node.rooms.get(cid) is None
