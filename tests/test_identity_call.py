"""Verification and continuous assurance with a scripted WebRTC doctor whose camera is VP8 made
from real photos (bench/identity.py): fast, no browser. The face work stays off the event loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.client import Clip
from bench.identity import IdentityNode, LoopLag, camera_shots, show, verified_call
from server.consent import CURRENT_VERSION, record_consent


@pytest.fixture(scope="module")
def shots() -> dict[str, Clip]:
    return camera_shots()


async def test_verified_then_another_person_raises_an_alert(tmp_path: Path, shots) -> None:
    async with IdentityNode(tmp_path, challenge="turn_left", recheck_s=0.5, grace_s=1.0,
                            grace_recheck_s=0.3) as node:
        lag = LoopLag()
        call = await verified_call(node, shots)
        assert call["after_challenge_s"] < 3.0
        doctor, guardian = call["doctor"], call["guardian"]
        cid = call["booking"].consultation_id
        await record_consent(node.ctx.db, node.ctx.events, cid, "guardian:test", CURRENT_VERSION)
        alerts = await node.ctx.live.subscribe("alerts")
        await doctor.send({"type": "accept"})
        await doctor.expect("state", timeout=10, state="active")
        show(doctor, shots["biden"])  # someone else sits down in front of the doctor's camera
        notice = await doctor.expect("notice", timeout=20, code="identity_not_registered")
        assert "registered doctor" in notice["en"]
        alert = await alerts.get(timeout=5)
        assert alert["kind"] == "identity.alert" and alert["reason"] == "not_registered"
        assert alert["action"] == "alert"
        show(doctor, shots["obama2"])
        await doctor.expect("notice", timeout=20, code="identity_recovered")
        lags = await lag.stop()
        await alerts.aclose()
        events = [e for e in await node.ctx.events.events(cid)]
        kinds = [e.kind for e in events]
        assert "identity.alert" in kinds and "identity.recovered" in kinds
        rechecks = [e.data for e in events if e.kind == "identity.recheck"]
        assert any(r["ok"] for r in rechecks) and any(r["reason"] == "not_registered"
                                                      for r in rechecks)
        # dlib ran in the pool: the loop never stalled for a face check (~110-160 ms each).
        assert lags["max_ms"] < 100, lags
        assert (await node.ctx.lifecycle.state(cid)) == "active"
        await doctor.close()
        await guardian.close()


async def test_mismatch_policy_end_aborts_the_call(tmp_path: Path, shots) -> None:
    async with IdentityNode(tmp_path, challenge="turn_left", recheck_s=0.5, grace_s=0.5,
                            grace_recheck_s=0.3, mismatch_action="end") as node:
        call = await verified_call(node, shots)
        doctor, guardian = call["doctor"], call["guardian"]
        cid = call["booking"].consultation_id
        await record_consent(node.ctx.db, node.ctx.events, cid, "guardian:test", CURRENT_VERSION)
        await doctor.send({"type": "accept"})
        await doctor.expect("state", timeout=10, state="active")
        show(doctor, shots["biden"])
        ended = await doctor.expect("state", timeout=20, state="aborted")
        assert "not_registered" in ended["reason"]
        await doctor.close()
        await guardian.close()
