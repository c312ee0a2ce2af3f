"""Issue 11: the pages' `quality` reports (strict, rate-limited, forwarded, kept for ops) and a
renegotiation on the same socket that the event log shows as a gap."""

from __future__ import annotations

import asyncio
import json

from core.auth import Role
from signaling.quality import QualityGate

from .clinical_helpers import active_call
from .node_fixtures import Node

BAD_QUALITY = [
    ({"type": "quality"}, "level"),
    ({"type": "quality", "level": "splendid"}, "level"),
    ({"type": "quality", "level": "good", "fps": "15"}, "fps"),
    ({"type": "quality", "level": "good", "fps": -1}, "fps"),
    ({"type": "quality", "level": "good", "fps": 1e9}, "fps"),
    ({"type": "quality", "level": "good", "freezes": 1.5}, "freezes"),
    ({"type": "quality", "level": "good", "freezes": True}, "freezes"),
    ({"type": "quality", "level": "good", "loss_percent": 101}, "loss_percent"),
    ({"type": "quality", "level": "good", "limitation": "moon"}, "limitation"),
]


async def test_malformed_quality_gets_bad_field_and_the_socket_stays_up(node: Node) -> None:
    booking = await node.book()
    guardian = node.client(node.token(Role.GUARDIAN, booking.guardian_id,
                                      booking.consultation_id))
    try:
        await guardian.connect()
        assert guardian.ws is not None
        for message, field in BAD_QUALITY:
            await guardian.send(message)
            error = await guardian.expect("error", timeout=5)
            assert (error["code"], error.get("field")) == ("bad_field", field), (message, error)
            assert error["message"]
        # NaN is not JSON, but Python's parser takes it: it must not get through either.
        await guardian.ws.send_str('{"type": "quality", "level": "good", "rtt_ms": NaN}')
        error = await guardian.expect("error", timeout=5)
        assert (error["code"], error.get("field")) == ("bad_field", "rtt_ms"), error
        await guardian.send({"type": "ping", "id": "still-here"})
        assert (await guardian.expect("pong"))["re"] == "still-here"
    finally:
        await guardian.close()


async def test_quality_reaches_the_other_side_and_ops_at_most_once_a_second(
        node: Node, clips) -> None:
    booking, guardian, doctor = await active_call(node, clips)
    cid = booking.consultation_id
    report = {"type": "quality", "level": "poor", "fps": 3.2, "freezes": 2, "freeze_s": 1.4,
              "loss_percent": 12.5, "rtt_ms": 420, "concealed_percent": 9.1,
              "limitation": "bandwidth", "unknown": "ignored"}
    try:
        await guardian.send(report)
        # A burst right after: dropped quietly (no error to the sender, nothing forwarded).
        for fps in (4.0, 5.0, 6.0):
            await guardian.send({**report, "fps": fps})
        got = await doctor.expect("quality", timeout=5)
        assert got["role"] == "guardian" and got["level"] == "poor"
        assert (got["fps"], got["freezes"], got["limitation"]) == (3.2, 2, "bandwidth")
        assert "unknown" not in got
        await guardian.send({"type": "ping", "id": "after-burst"})
        reply = await guardian.expect_one(("pong", "error"), timeout=5)
        assert reply == {"type": "pong", "re": "after-burst"}, reply
        with_delivered = await _live_delivered(node, cid, "guardian")
        assert with_delivered["fps"] == 3.2 and with_delivered["level"] == "poor"
        # A second later the next report is taken again.
        await asyncio.sleep(1.05)
        await guardian.send({**report, "level": "good", "fps": 15.0})
        got = await doctor.expect("quality", timeout=5)
        assert (got["level"], got["fps"]) == ("good", 15.0), got
    finally:
        await guardian.close()
        await doctor.close()
    kinds = [e["kind"] for e in await node.events(cid)]
    assert "signaling.refused" not in kinds, kinds


async def _live_delivered(node: Node, cid: str, role: str, timeout: float = 5.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        live = (await node.ctx.live.live_consultations()).get(cid, {})
        delivered = live.get("participants", {}).get(role, {}).get("delivered")
        if delivered:
            return delivered
        assert asyncio.get_running_loop().time() < deadline, \
            f"no delivered stats for {role} within {timeout} s: {json.dumps(live)[:500]}"
        await asyncio.sleep(0.05)


def test_quality_gate_takes_one_report_a_second() -> None:
    gate = QualityGate()
    assert gate.admit(now=10.0)
    assert not gate.admit(now=10.5)
    assert not gate.admit(now=10.99)
    assert gate.admit(now=11.0)
    assert gate.dropped == 2


async def test_new_offer_on_a_live_peer_is_a_logged_gap(node: Node, clips) -> None:
    """A page whose address changed makes a new peer connection on the same socket before the
    node noticed anything: the log shows the gap, and media flows again."""
    booking, guardian, doctor = await active_call(node, clips)
    cid = booking.consultation_id
    try:
        await guardian.start_media()  # a new offer while the old peer is still "connected"
        await doctor.expect("participant", role="guardian", status="reconnecting")
        await doctor.expect("participant", role="guardian", status="connected", timeout=15)
        await doctor.wait_frames("video", 15)
        await guardian.wait_frames("video", 15)
    finally:
        await guardian.close()
        await doctor.close()
    events = await node.events(cid)
    kinds = [e["kind"] for e in events]
    assert kinds.index("participant.lost") < kinds.index("participant.media_restored"), kinds
    lost = next(e for e in events if e["kind"] == "participant.lost")
    assert "renegotiated" in lost["data"]["reason"], lost
    assert "participant.rejoined" not in kinds
