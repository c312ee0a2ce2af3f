"""Guardian presence through a real node and WebRTC (issue 4), with a scripted patient camera
made of real photos: gate, timeline, banner message, ops alert, prescribing for an under-6, and
the absence-limit policy. (tests/test_browser_presence.py does the same through Chromium.)"""

from __future__ import annotations

import io
import time
from pathlib import Path

from bench.faces import OBAMA, TWO_PEOPLE, empty_scene
from bench.identity import show
from core.auth import Role

from .clinical_helpers import exported
from .node_fixtures import Node
from .presence_fixtures import (
    enroll_guardian_photo,
    join_call,
    patient_shots,
    presence_node,
    presence_service,
)

RX = {"type": "prescribe", "items": [{"drug": "布洛芬混悬液 Ibuprofen suspension",
                                      "dose": "4 ml", "frequency": "q6h prn", "days": "3"}]}


async def _enrolled_booking(node: Node):
    booking = await node.book()
    resp = await enroll_guardian_photo(node, booking.guardian_id, OBAMA)
    assert resp.status == 200, await resp.text()
    return booking


async def test_gate_absence_alert_prescribing_and_timeline(tmp_path: Path, clips) -> None:
    shots = patient_shots()
    async with presence_node(tmp_path, absent_after_s=3.0, absent_limit_s=600) as node:
        booking = await _enrolled_booking(node)
        cid = booking.consultation_id
        call = await join_call(node, booking, shots["guardian_child"], clips["video"])
        try:
            doctor = call.doctor
            await doctor.expect("presence", timeout=60, guardian="present")
            await doctor.send({"type": "accept", "id": 1})
            await doctor.expect("state", timeout=10, state="active")
            await doctor.send({**RX, "id": 2})
            issued = await doctor.expect("prescribed", timeout=10)
            assert issued["items"] == 1 and issued["re"] == 2

            alerts = await node.ctx.live.subscribe("alerts")
            show(call.guardian, shots["child_alone"])  # the guardian leaves; the child stays
            left = time.monotonic()
            notice = await doctor.expect("presence", timeout=15, guardian="absent")
            took = time.monotonic() - left
            assert took < 3.0 + 2.5, f"absence seen after {took:.1f} s"
            assert notice["zh"] == "请监护人回到镜头前" and notice["faces"] == 1
            await call.guardian.expect("presence", timeout=5, guardian="absent")
            alert = await alerts.get(timeout=5)
            await alerts.aclose()
            assert alert["kind"] == "guardian.absent" and alert["consultation"] == cid
            assert (await node.ctx.live.consultation(cid))["guardian"] == "absent"

            await doctor.send({**RX, "id": 3})
            refused = await doctor.expect("error", timeout=10)
            assert refused["code"] == "guardian_absent" and refused["re"] == 3, refused
            # The doctor's page reloads: it shows the banner again at once.
            await doctor.drop()
            doctor = call.doctor = node.client(doctor.token, {"video": clips["video"]})
            assert (await doctor.connect())["rejoined"] is True
            await doctor.expect("presence", timeout=5, guardian="absent")
            await doctor.start_media()

            show(call.guardian, shots["guardian_child"])  # back
            await doctor.expect("presence", timeout=15, guardian="present")
            assert (await node.ctx.live.consultation(cid))["guardian"] == "present"
            await doctor.send({**RX, "id": 4})
            await doctor.expect("prescribed", timeout=10)
        finally:
            await call.close()

        events = await node.events(cid)
        presence = [e["data"] for e in events if e["kind"] == "guardian.presence"]
        assert [p["state"] for p in presence] == ["present", "absent", "present"], presence
        absent = presence[1]
        assert absent["faces"] == 1 and 3.0 - 0.2 <= absent["unseen_s"] < 3.0 + 1.5
        assert presence[0]["distance"] < 0.5 and presence[0]["faces"] == 2
        assert all("at" in p and "threshold" in p for p in presence)
        kinds = [e["kind"] for e in events]
        assert kinds.count("prescription.issued") == 2
        activated = next(i for i, e in enumerate(events)
                         if e["kind"] == "state" and e["data"]["to"] == "active")
        assert kinds.index("guardian.presence") < activated  # seen before the call started
        refusals = [e["data"] for e in events if e["kind"] == "signaling.refused"]
        assert any(r["code"] == "guardian_absent" for r in refusals)
        stats = presence_service(node).stats
        # Not every sample is encoded: still faces keep their earlier encoding.
        assert stats.samples >= 5 and stats.encoded < stats.samples, stats


async def test_a_different_adult_beside_the_child_does_not_open_the_gate(tmp_path: Path,
                                                                         clips) -> None:
    shots = patient_shots()
    async with presence_node(tmp_path) as node:
        booking = await _enrolled_booking(node)
        cid = booking.consultation_id
        call = await join_call(node, booking, shots["stranger_child"], clips["video"])
        try:
            svc = presence_service(node)
            monitor = await svc.ensure_monitor(cid)
            assert monitor is not None
            async with monitor.changed:
                await monitor.changed.wait_for(lambda: svc.stats.samples >= 4)
            assert monitor.state == "unknown"
            await call.doctor.send({"type": "accept", "id": 1})
            error = await call.doctor.expect("error", timeout=10)
            assert "guardian_present" in error["message"], error
        finally:
            await call.close()
        refused = [e["data"] for e in await node.events(cid) if e["kind"] == "accept.refused"]
        assert refused and "guardian_present" in refused[0]


async def test_absence_past_the_limit_terminates_with_a_referral(tmp_path: Path, clips) -> None:
    shots = patient_shots()
    async with presence_node(tmp_path, absent_after_s=2.0, absent_limit_s=4.0,
                             absent_action="terminate") as node:
        booking = await _enrolled_booking(node)
        cid = booking.consultation_id
        call = await join_call(node, booking, shots["guardian_child"], clips["video"])
        try:
            await call.doctor.expect("presence", timeout=60, guardian="present")
            await call.doctor.send({"type": "accept"})
            await call.doctor.expect("state", timeout=10, state="active")
            show(call.guardian, shots["child_alone"])
            await call.doctor.expect("presence", timeout=10, guardian="absent")
            final = await call.guardian.expect("state", timeout=15, state="terminated")
            assert "guardian_absent" in final["reason"]
        finally:
            await call.close()
        events = await node.events(cid)
        last = [e for e in events if e["kind"] == "state"][-1]
        assert last["actor"] == "system"
        assert last["data"]["termination"]["reason"] == "guardian_absent"
        assert last["data"]["referral"]["department"] == "儿童生长发育"
        assert last["data"]["referral"]["urgency"] == "routine"
        assert "guardian.absent_limit" in [e["kind"] for e in events]
        row = (await exported(node.session, node.url, node.token(Role.REGULATOR, "r")))[cid]
        assert row["termination_reason"] == "guardian_absent"
        assert row["guardian"] == {"monitored": True, "seen": True, "absences": 1,
                                   "absent_limit_reached": True, "last": "absent"}, row


async def test_guardian_photo_enrollment_errors(tmp_path: Path) -> None:
    async with presence_node(tmp_path, max_photo_bytes=1_500_000) as node:
        booking = await node.book()
        gid = booking.guardian_id
        big = await enroll_guardian_photo(node, gid, b"\xff\xd8" + b"0" * 1_600_000)
        assert big.status == 413 and (await big.json())["error"]["code"] == "too_large"
        gif = await enroll_guardian_photo(node, gid, b"GIF89a", content_type="image/gif")
        assert gif.status == 422 and (await gif.json())["error"]["code"] == "unsupported_format"
        buf = io.BytesIO()
        empty_scene((320, 240)).save(buf, "PNG")
        nobody = await enroll_guardian_photo(node, gid, buf.getvalue(), "image/png")
        assert nobody.status == 422 and (await nobody.json())["error"]["code"] == "no_face"
        two = await enroll_guardian_photo(node, gid, TWO_PEOPLE)
        body = await two.json()
        assert two.status == 422 and body["error"]["code"] == "several_faces", body
        assert "guardian" in body["error"]["message"]
        unknown = await enroll_guardian_photo(node, "g_nobody", OBAMA)
        assert unknown.status == 404
        ok = await enroll_guardian_photo(node, gid, OBAMA)
        assert ok.status == 200 and (await ok.json())["face"]["face_px"] >= 80
