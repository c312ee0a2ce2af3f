"""Verification and continuous assurance with a scripted WebRTC doctor whose camera is VP8 made
from real photos (bench/identity.py): fast, no browser. The face work stays off the event loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.client import CallClient, Clip
from bench.identity import (
    IdentityNode,
    LoopLag,
    camera_shots,
    do_actions,
    photo_clip,
    show,
    turn,
    until,
    verified_call,
)
from core.auth import TOKENS_KEY, Role
from core.consent import CURRENT_VERSION, record_consent

from .clinical_helpers import exported


@pytest.fixture(scope="module")
def shots() -> dict[str, Clip]:
    from PIL import ImageEnhance

    from bench.faces import OBAMA, head_and_shoulders

    dark = ImageEnhance.Brightness(head_and_shoulders(OBAMA)).enhance(0.12)  # luma ~15
    return {**camera_shots(), "dark": photo_clip(dark)}


async def _consented(node: IdentityNode, call: dict) -> tuple[CallClient, CallClient, str]:
    """The verified call's doctor and guardian, and its id, with the guardian's consent given."""
    cid = call["booking"].consultation_id
    await record_consent(node.ctx.db, node.ctx.events, cid, "guardian:test", CURRENT_VERSION)
    return call["doctor"], call["guardian"], cid


async def test_verified_then_another_person_raises_an_alert(tmp_path: Path, shots) -> None:
    async with IdentityNode(tmp_path, challenge="turn_left,turn_right", recheck_s=0.5, grace_s=1.0,
                            grace_recheck_s=0.3) as node:
        lag = LoopLag()
        call = await verified_call(node, shots)
        assert call["after_challenge_s"] < 3.0
        doctor, guardian, cid = await _consented(node, call)
        attempt, = [e.data for e in await node.ctx.events.events(cid)
                    if e.kind == "identity.attempt"]
        assert attempt["challenge"] == "turn_left,turn_right" and attempt["steps_done"] == 2
        assert attempt["outcome"] == "verified" and attempt["distance"] <= 0.5
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
    async with IdentityNode(tmp_path, challenge="turn_left,turn_right", recheck_s=600, grace_s=1.0,
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
    async with IdentityNode(tmp_path, challenge="turn_left,turn_right", recheck_s=0.5, grace_s=0.5,
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


async def _doctor_with(node: IdentityNode, first: Clip, svc_config: dict | None = None):
    """A booked consultation with obama.jpg enrolled, consent given, the guardian joined and the
    doctor joined with media showing `first`."""
    from bench.faces import OBAMA
    from identity.doctor.registry_api import IDENTITY_KEY
    from identity.faces.enrollment import Whose, enroll
    from server.demo import seed

    svc = node.app[IDENTITY_KEY]
    booking = await seed(node.ctx.db, node.settings, node.app[TOKENS_KEY])
    cid = booking.consultation_id
    await enroll(svc, Whose.doctor(booking.doctor_id), OBAMA.read_bytes(),
                 svc.config.min_face_px, "admin:test")
    await record_consent(node.ctx.db, node.ctx.events, cid, "guardian:test", CURRENT_VERSION)
    guardian = CallClient(node.url, booking.guardian_link.split("#token=")[1], {}, node.session)
    await guardian.connect()
    doctor_token = booking.doctor_link.split("#token=")[1]
    doctor = CallClient(node.url, doctor_token, {"video": first}, node.session)
    await doctor.connect()
    await doctor.start_media()
    return svc, cid, doctor_token, doctor, guardian


async def test_camera_problems_are_guidance_and_only_a_wrong_person_locks(
        tmp_path: Path, shots) -> None:
    """Two people, nobody, a dark room: each is explained (what to fix) and costs no attempt;
    someone else three times locks, and the lock survives a rejoin."""
    from bench.faces import TWO_PEOPLE, empty_scene, load_photo
    from bench.identity import photo_clip

    async with IdentityNode(tmp_path, challenge="turn_left", attempt_time_s=2.0,
                            retry_pause_s=0.3) as node:
        _, cid, doctor_token, doctor, guardian = await _doctor_with(
            node, photo_clip(load_photo(TWO_PEOPLE)))
        for reason, next_shot in (("several_faces", photo_clip(empty_scene((640, 480)))),
                                  ("no_face", shots["dark"]), ("too_dark", shots["biden"])):
            hint = await doctor.expect("verify", timeout=30, step="guidance", reason=reason)
            assert hint["en"] and hint["zh"] and hint["attempt"] == 1, hint  # what to fix
            if reason == "too_dark":  # the attempt ends on guidance: still all 3 attempts left
                ended = await doctor.expect("verify", timeout=30, step="guidance",
                                            reason="too_dark", remaining=3)
                assert "light" in ended["en"], ended
            show(doctor, next_shot)
        remaining = []
        for _ in range(3):
            failed = await doctor.expect("verify", timeout=40, step="failed")
            assert failed["reason"] == "not_registered" and failed["en"] and failed["zh"]
            remaining.append(failed["remaining"])
        assert remaining == [2, 1, 0]
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
        events = await node.ctx.events.events(cid)
        attempts = [e.data for e in events if e.kind == "identity.attempt"]
        assert [a["outcome"] for a in attempts] == ["not_registered"] * 3
        assert all(a["counted"] and a["distance"] > 0.5 for a in attempts)
        guidance = [e.data["reason"] for e in events if e.kind == "identity.guidance"]
        assert "too_dark" in guidance, guidance
        assert await node.ctx.lifecycle.state(cid) == "verifying"


async def test_actions_in_the_wrong_order_count_then_the_right_order_passes(
        tmp_path: Path, shots) -> None:
    """Asked to turn left then right, the doctor's camera turns right first (a replayed clip
    doing its own order): `challenge_wrong`, counted. Done as asked the next time: verified."""
    async with IdentityNode(tmp_path, challenge="turn_left,turn_right",
                            retry_pause_s=0.3) as node:
        svc, cid, _, doctor, guardian = await _doctor_with(node, shots["obama2_mirrored"])
        verification = svc.verifications[cid]
        step = await doctor.expect("verify", timeout=60, step="challenge")
        assert (step["challenge"], step["index"], step["of"]) == ("turn_left", 1, 2)
        await turn(doctor, verification, shots, "obama2")  # to the right: the second action
        failed = await doctor.expect("verify", timeout=20, step="failed")
        assert failed["reason"] == "challenge_wrong" and failed["remaining"] == 2, failed
        assert "order" in failed["en"]
        _, asked = await do_actions(doctor, verification, shots)
        assert asked == ["turn_left", "turn_right"]
        verified = await doctor.expect("verify", timeout=20, step="verified")
        assert verified["distance"] <= 0.5
        await doctor.close()
        await guardian.close()
        attempts = [e.data for e in await node.ctx.events.events(cid)
                    if e.kind == "identity.attempt"]
        assert [(a["outcome"], a["counted"], a["rival"], a["steps_done"]) for a in attempts] == [
            ("challenge_wrong", True, "turn_right", 0), ("verified", False, None, 2)]
        assert [a["attempt"] for a in attempts] == [1, 2]


async def test_mismatch_policy_pause_holds_the_doctors_media_until_confirmed(
        tmp_path: Path, shots) -> None:
    """`pause`: while someone else is on the doctor's camera the patient side neither sees nor
    hears them; the node still receives (records, re-checks) and resumes once it is the doctor."""
    async with IdentityNode(tmp_path, challenge="turn_left,turn_right", recheck_s=0.5, grace_s=0.5,
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
        source = node.rooms.get(cid).participants[Role.DOCTOR].sources["video"]
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
