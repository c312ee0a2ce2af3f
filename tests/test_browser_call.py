"""The call through the real pages in real headless Chromium: guardian and doctor see each other.

Each side is its own Chromium process, because the fake camera (a .y4m built from real photos in
../shared/faces) is per process. Runs under `unshare -n`: loopback only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chromium import launch_chromium, remote_video_progress, wait_for_body_data
from bench.faces import ADULT_A, CHILD_A, OBAMA, make_y4m, side_by_side

from .node_fixtures import Node

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser_call"

pytestmark = pytest.mark.browser


async def test_guardian_and_doctor_see_each_other_leave_rejoin_and_end(
        node: Node, tmp_path: Path) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    doctor_cam = make_y4m(tmp_path / "doctor.y4m", OBAMA, seconds=6)
    guardian_cam = make_y4m(tmp_path / "guardian.y4m", side_by_side(ADULT_A, CHILD_A), seconds=6)
    doctor_link = booking.doctor_link.replace(node.settings.public_url, node.url)
    guardian_link = booking.guardian_link.replace(node.settings.public_url, node.url)

    async with launch_chromium(guardian_cam, ARTIFACTS / "guardian") as g_browser, \
            launch_chromium(doctor_cam, ARTIFACTS / "doctor") as d_browser:
        guardian = await g_browser.new_page("guardian")
        doctor = await d_browser.new_page("doctor")
        await guardian.goto(guardian_link)
        await doctor.goto(doctor_link)

        # Informed consent (issue 6): the guardian ticks the consent box before joining.
        await guardian.check("#consent-check")
        await guardian.click("#join-btn")
        await wait_for_body_data(guardian, "state", "waiting")
        await doctor.click("#join-btn")
        await wait_for_body_data(doctor, "state", "verifying")
        await wait_for_body_data(doctor, "peer", "connected")

        # Each side plays the other's video: a picture, and frames advancing.
        g_stats = await remote_video_progress(guardian, timeout_s=30)
        d_stats = await remote_video_progress(doctor, timeout_s=30)
        assert g_stats["width"] > 0 and d_stats["width"] > 0

        await wait_for_body_data(doctor, "consent", "given")
        await doctor.click("#accept-btn")
        await wait_for_body_data(guardian, "state", "active")
        await wait_for_body_data(doctor, "state", "active")
        await remote_video_progress(guardian, timeout_s=10)
        await g_browser.screenshot(guardian, "guardian-in-call")
        await d_browser.screenshot(doctor, "doctor-in-call")

        # The guardian leaves: the doctor's page says so and the consultation stays open; the
        # guardian rejoins from the same page and the pictures come back.
        await guardian.click("#leave-btn")
        await wait_for_body_data(guardian, "phase", "left")
        await wait_for_body_data(doctor, "peer", "left")
        assert await doctor.evaluate("document.body.dataset.state") == "active"
        await guardian.click("#rejoin-btn")
        await wait_for_body_data(doctor, "peer", "connected")
        await wait_for_body_data(guardian, "peer", "connected")
        await remote_video_progress(doctor, timeout_s=20)
        await remote_video_progress(guardian, timeout_s=20)

        await doctor.click("#end-btn")
        await doctor.click("#end-confirm-btn")
        await wait_for_body_data(doctor, "phase", "final")
        await wait_for_body_data(guardian, "phase", "final")
        await wait_for_body_data(guardian, "state", "ended")
        await g_browser.screenshot(guardian, "guardian-ended")

    assert await node.states(cid) == ["waiting", "verifying", "active", "ended"]
    kinds = [e["kind"] for e in await node.events(cid)]
    assert kinds.count("media.connected") >= 3  # both sides, then the guardian again
    assert kinds.index("participant.left") < kinds.index("participant.rejoined")
    assert (await node.ctx.events.verify(cid)).ok
    assert node.rooms.get(cid) is None
