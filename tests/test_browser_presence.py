"""Guardian on camera (issue 4) through the real pages in Chromium.

The patient camera is a clip composed at test time from two real photos side by side: the
guardian, enrolled from obama/obama.jpg and shown from a DIFFERENT photo (obama2.jpg), beside a
child (child_a/); then the child alone (the guardian left); Chromium loops the clip, so the
guardian comes back. The consultation can start only once the guardian was seen; the absence is
detected within TC_GUARDIAN_ABSENT_S, the banner shows on the doctor's page, and the timeline
records absent then present. (A different adult beside the child: tests/test_presence_call.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chromium import launch_chromium, remote_video_progress, wait_for_body_data
from bench.faces import CHILD_A, OBAMA, OBAMA_2, Segment, empty_scene, make_y4m, side_by_side

from .presence_fixtures import enroll_guardian_photo, presence_node, presence_service

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser_presence"
ABSENT_S = 5.0  # the default TC_GUARDIAN_ABSENT_S

pytestmark = pytest.mark.browser


async def test_guardian_leaves_and_returns_banner_and_timeline(tmp_path: Path) -> None:
    with_guardian = side_by_side(OBAMA_2, CHILD_A)
    child_alone = side_by_side(empty_scene(), CHILD_A)
    guardian_cam = make_y4m(tmp_path / "patient.y4m",
                            [Segment(with_guardian, 14), Segment(child_alone, 10)])
    doctor_cam = make_y4m(tmp_path / "doctor.y4m", OBAMA, seconds=4)
    async with presence_node(tmp_path, absent_after_s=ABSENT_S, absent_limit_s=600) as node:
        booking = await node.book()
        cid = booking.consultation_id
        resp = await enroll_guardian_photo(node, booking.guardian_id, OBAMA)
        assert resp.status == 200, await resp.text()
        svc = presence_service(node)
        doctor_link = booking.doctor_link.replace(node.settings.public_url, node.url)
        guardian_link = booking.guardian_link.replace(node.settings.public_url, node.url)

        async with launch_chromium(guardian_cam, ARTIFACTS / "guardian") as g_browser, \
                launch_chromium(doctor_cam, ARTIFACTS / "doctor") as d_browser:
            guardian = await g_browser.new_page("guardian")
            doctor = await d_browser.new_page("doctor")
            await guardian.goto(guardian_link)
            await doctor.goto(doctor_link)
            await wait_for_body_data(guardian, "phase", "prejoin")
            await guardian.wait_for_selector("#consent-text .consent-section", state="visible")
            await guardian.check("#consent-check")
            await guardian.click("#join-btn")
            await wait_for_body_data(guardian, "state", "waiting")
            await doctor.click("#join-btn")
            await wait_for_body_data(doctor, "state", "verifying")
            await wait_for_body_data(doctor, "consent", "given")
            await remote_video_progress(doctor, timeout_s=30)

            monitor = await svc.ensure_monitor(cid)
            assert monitor is not None
            await monitor.wait_for("present", timeout=60)
            await doctor.click("#accept-btn")
            await wait_for_body_data(doctor, "state", "active")
            await wait_for_body_data(guardian, "state", "active")

            # The clip loops: within one cycle (24 s) plus the hysteresis the guardian is gone.
            await wait_for_body_data(doctor, "guardian", "absent", timeout_s=45)
            banner = await doctor.inner_text("#presence-banner")
            assert "请监护人回到镜头前" in banner and "return to the camera" in banner
            assert await doctor.is_visible("#presence-banner")
            await d_browser.screenshot(doctor, "doctor-guardian-absent")
            await wait_for_body_data(guardian, "guardian", "absent", timeout_s=5)
            await g_browser.screenshot(guardian, "guardian-guardian-absent")

            await wait_for_body_data(doctor, "guardian", "present", timeout_s=30)
            assert await doctor.is_hidden("#presence-banner")
            await d_browser.screenshot(doctor, "doctor-guardian-back")

        events = await node.events(cid)
        activated = next(i for i, e in enumerate(events)
                         if e["kind"] == "state" and e["data"]["to"] == "active")
        before = [e["data"]["state"] for e in events[:activated]
                  if e["kind"] == "guardian.presence"]
        assert before and before[-1] == "present"  # the gate opened on a sighting
        during = [e["data"] for e in events[activated:] if e["kind"] == "guardian.presence"]
        states = [d["state"] for d in during]
        assert states[:2] == ["absent", "present"], states
        absent = during[0]
        assert ABSENT_S - 0.2 <= absent["unseen_s"] < ABSENT_S + 1.5, absent
        assert absent["faces"] == 1  # the child is still there
        assert during[1]["faces"] == 2 and during[1]["distance"] < 0.5
