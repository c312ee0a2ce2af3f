"""Verification and continuous assurance with a scripted WebRTC doctor whose camera is VP8 made
from real photos (bench/identity.py): fast, no browser. The face work stays off the event loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.client import CallClient, Clip
from bench.identity import IdentityNode, LoopLag, camera_shots, show, until, verified_call
from server.auth import TOKENS_KEY, Role
from server.consent import CURRENT_VERSION, record_consent

from .clinical_helpers import exported


@pytest.fixture(scope="module")
def shots() -> dict[str, Clip]:
    return camera_shots()


async def _consented(node: IdentityNode, call: dict) -> tuple[CallClient, CallClient, str]:
    """The verified call's doctor and guardian, and its id, with the guardian's consent given."""
    cid = call["booking"].consultation_id
    await record_consent(node.ctx.db, node.ctx.events, cid, "guardian:test", CURRENT_VERSION)
    return call["doctor"], call["guardian"], cid


async def test_verified_then_another_person_raises_an_alert(tmp_path: Path, shots) -> None:
    async with IdentityNode(tmp_path, challenge="turn_left", recheck_s=0.5, grace_s=1.0,
                            grace_recheck_s=0.3) as node:
        lag = LoopLag()
        call = await verified_call(node, shots)
        assert call["after_challenge_s"] < 3.0
        doctor, guardian, cid = await _consented(node, call)
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


async def test_someone_else_sitting_down_before_the_accept_is_caught_at_once(
        tmp_path: Path, shots) -> None:
    """Verified, then another person takes the seat and accepts: the first re-check runs as the
    call starts, not a cadence later."""
    async with IdentityNode(tmp_path, challenge="turn_left", recheck_s=600, grace_s=1.0,
                            grace_recheck_s=0.3) as node:
        call = await verified_call(node, shots)
        doctor, guardian, cid = await _consented(node, call)
        await guardian.start_media()  # receive-only: it watches what the node forwards
        show(doctor, shots["biden"])
        await guardian.wait_frames("video", 10)  # the new face has gone through the node
        await doctor.send({"type": "accept"})
        await doctor.expect("state", timeout=10, state="active")
        await doctor.expect("notice", timeout=15, code="identity_not_registered")
        await doctor.close()
        await guardian.close()
        rechecks = [e.data for e in await node.ctx.events.events(cid)
                    if e.kind == "identity.recheck"]
        assert rechecks[0]["reason"] == "not_registered", rechecks


async def test_mismatch_policy_end_terminates_with_a_referral(tmp_path: Path, shots) -> None:
    async with IdentityNode(tmp_path, challenge="turn_left", recheck_s=0.5, grace_s=0.5,
                            grace_recheck_s=0.3, mismatch_action="end") as node:
        call = await verified_call(node, shots)
        doctor, guardian, cid = await _consented(node, call)
        await doctor.send({"type": "accept"})
        await doctor.expect("state", timeout=10, state="active")
        show(doctor, shots["biden"])
        ended = await guardian.expect("state", timeout=20, state="terminated")
        assert "doctor_identity_lost" in ended["reason"]
        await doctor.close()
        await guardian.close()
        last = [e for e in await node.ctx.events.events(cid) if e.kind == "state"][-1]
        assert last.actor == "system"
        assert last.data["termination"]["reason"] == "doctor_identity_lost"
        assert last.data["referral"]["urgency"] == "routine"
        # The regulator's export says how the identity checks went.
        regulator = node.app[TOKENS_KEY].issue(Role.REGULATOR, "supervision-platform")
        row = (await exported(node.session, node.url, regulator))[cid]
        assert row["termination_reason"] == "doctor_identity_lost"
        verification = row["verification"]
        assert verification["verified"] is True and verification["distance"] < 0.5
        assert verification["locked"] is False and verification["alerts"] == 1
        assert verification["recheck_failures"] >= 1, verification


async def test_each_failure_is_explained_and_the_lock_survives_a_rejoin(tmp_path: Path,
                                                                        shots) -> None:
    """Two people, then nobody, then someone else: three explained failures, then locked; a
    doctor's page that reconnects is told it is locked, and accept stays refused."""
    from bench.identity import photo_clip
    from identity.enrollment import Whose, enroll
    from identity.registry_api import IDENTITY_KEY
    from server.demo import seed
    from tests.browser import OBAMA, TWO_PEOPLE, empty_scene, load_photo

    async with IdentityNode(tmp_path, challenge="turn_left", attempt_time_s=3.0,
                            retry_pause_s=0.3) as node:
        svc = node.app[IDENTITY_KEY]
        booking = await seed(node.ctx.db, node.settings, node.app[TOKENS_KEY])
        cid = booking.consultation_id
        await enroll(svc, Whose.doctor(booking.doctor_id), OBAMA.read_bytes(),
                     svc.config.min_face_px, "admin:test")
        await record_consent(node.ctx.db, node.ctx.events, cid, "guardian:test", CURRENT_VERSION)
        guardian = CallClient(node.url, booking.guardian_link.split("#token=")[1], {},
                              node.session)
        await guardian.connect()
        doctor_token = booking.doctor_link.split("#token=")[1]
        doctor = CallClient(node.url, doctor_token,
                            {"video": photo_clip(load_photo(TWO_PEOPLE))}, node.session)
        await doctor.connect()
        await doctor.start_media()
        reasons = []
        for next_shot in (photo_clip(empty_scene()), shots["biden"], None):
            failed = await doctor.expect("verify", timeout=40, step="failed")
            reasons.append(failed["reason"])
            assert failed["en"] and failed["zh"], failed  # explained on the page
            if next_shot is not None:
                show(doctor, next_shot)
        assert reasons == ["several_faces", "no_face", "not_registered"]
        await doctor.expect("verify", timeout=10, step="locked")
        # The doctor's connection drops and comes back (even with the right face now).
        await doctor.drop()
        again = CallClient(node.url, doctor_token, {"video": shots["obama2"]}, node.session)
        assert (await again.connect())["rejoined"] is True
        await again.expect("verify", timeout=10, step="locked")
        await again.send({"type": "accept", "id": 1})
        refused = await again.expect("error", timeout=10)
        assert "identity" in refused["message"], refused
        await again.close()
        await guardian.close()
        attempts = [e.data["outcome"] for e in await node.ctx.events.events(cid)
                    if e.kind == "identity.attempt"]
        assert attempts == ["several_faces", "no_face", "not_registered"]
        assert await node.ctx.lifecycle.state(cid) == "verifying"


async def test_mismatch_policy_pause_holds_the_doctors_media_until_confirmed(
        tmp_path: Path, shots) -> None:
    """`pause`: while someone else is on the doctor's camera the patient side neither sees nor
    hears them; the node still receives (records, re-checks) and resumes once it is the doctor."""
    async with IdentityNode(tmp_path, challenge="turn_left", recheck_s=0.5, grace_s=0.5,
                            grace_recheck_s=0.3, mismatch_action="pause") as node:
        call = await verified_call(node, shots)
        doctor, guardian, cid = await _consented(node, call)
        await guardian.start_media()  # receive-only: what the patient side gets
        await doctor.send({"type": "accept"})
        await doctor.expect("state", timeout=10, state="active")
        await guardian.wait_frames("video", 10)
        show(doctor, shots["biden"])
        paused = await guardian.expect("notice", timeout=20, code="doctor_paused")
        assert "paused" in paused["en"]
        # The doctor's camera goes on reaching the node; none of it reaches the patient side.
        source = node.ctx.rooms.get(cid).participants[Role.DOCTOR].sources["video"]
        node_before, patient_before = source.frames, guardian.received["video"].frames
        await until(lambda: source.frames >= node_before + 30, 10,
                    "the doctor's video still reaching the node")
        assert guardian.received["video"].frames <= patient_before + 3  # at most what was in flight
        show(doctor, shots["obama2"])
        await guardian.expect("notice", timeout=20, code="doctor_resumed")
        await guardian.wait_frames("video", 10)
        assert await node.ctx.lifecycle.state(cid) == "active"
        await doctor.close()
        await guardian.close()
        kinds = [e.kind for e in await node.ctx.events.events(cid)]
        assert kinds.index("identity.paused") < kinds.index("identity.resumed"), kinds
