"""Doctor verification through the real page in headless Chromium (issue 3).

The doctor's fake camera loops a clip built from real photos of the doctor: obama2 (head turned
to one side), obama.jpg (facing the camera), obama2's mirror image (turned to the other side) make
a head turn through its middle pose; a single still with only pan/zoom is a photo held up to the
camera, and obama2 cut straight to its mirror image is one photo swapped for another. The doctor
is enrolled with obama.jpg. The guardian is a scripted client (only its presence matters).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import ImageOps

from server.consent import CURRENT_VERSION, record_consent
from tests.browser import (
    BIDEN,
    OBAMA,
    OBAMA_2,
    Segment,
    head_and_shoulders,
    launch_chromium,
    make_y4m,
    wait_for_body_data,
)

from .identity_fixtures import enroll_photo, identity_node
from .node_fixtures import Node

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "identity"

pytestmark = pytest.mark.browser


def turning_clip(path: Path) -> Path:
    side = head_and_shoulders(OBAMA_2)
    return make_y4m(path, [Segment(side, 2.5), Segment(head_and_shoulders(OBAMA), 1.0),
                           Segment(ImageOps.mirror(side), 2.5)])


def swapped_photos_clip(path: Path, photo: Path) -> Path:
    shot = head_and_shoulders(photo)
    return make_y4m(path, [Segment(shot, 2.5), Segment(ImageOps.mirror(shot), 2.5)])


async def _doctor_joins(node: Node):
    booking = await node.book()
    response = await enroll_photo(node, booking.doctor_id, OBAMA)
    assert response.status == 200, await response.text()
    guardian = node.client(booking.guardian_link.split("#token=")[1])
    await guardian.connect()
    link = booking.doctor_link.replace(node.settings.public_url, node.url)
    return booking, guardian, link


async def _attempts(node: Node, cid: str) -> list[dict]:
    return [e["data"] for e in await node.events(cid) if e["kind"] == "identity.attempt"]


async def test_registered_doctor_turns_head_passes_and_starts(tmp_path: Path) -> None:
    async with identity_node(tmp_path, challenge="turn_left", challenge_time_s=12) as node:
        camera = turning_clip(tmp_path / "obama-turn.y4m")
        booking, guardian, link = await _doctor_joins(node)
        cid = booking.consultation_id
        async with launch_chromium(camera, ARTIFACTS / "registered") as browser:
            page = await browser.new_page("doctor")
            await page.goto(link)
            await page.click("#join-btn")
            await wait_for_body_data(page, "verify", "challenge", timeout_s=40)
            assert (await page.evaluate("document.body.dataset.verifyChallenge")) == "turn_left"
            await wait_for_body_data(page, "verify", "verified", timeout_s=30)
            await browser.screenshot(page, "verified")
            await record_consent(node.ctx.db, node.ctx.events, cid, "guardian:test",
                                 CURRENT_VERSION)
            await page.click("#accept-btn")
            await wait_for_body_data(page, "state", "active", timeout_s=15)
        await guardian.close()
        attempts = await _attempts(node, cid)
        assert [a["outcome"] for a in attempts] == ["verified"]
        assert attempts[0]["distance"] <= 0.5 and attempts[0]["frames"] >= 3
        assert attempts[0]["evidence_sha256"]
        assert "active" in await node.states(cid)


async def test_different_person_is_refused_and_stays_verifying(tmp_path: Path) -> None:
    async with identity_node(tmp_path, challenge="turn_left", retry_pause_s=0.5) as node:
        camera = swapped_photos_clip(tmp_path / "biden.y4m", BIDEN)
        booking, guardian, link = await _doctor_joins(node)
        cid = booking.consultation_id
        alerts = await node.ctx.live.subscribe("alerts")
        async with launch_chromium(camera, ARTIFACTS / "impostor") as browser:
            page = await browser.new_page("doctor")
            await page.goto(link)
            await page.click("#join-btn")
            await wait_for_body_data(page, "verify", "failed", timeout_s=40)
            assert await page.evaluate("document.body.dataset.verifyReason") == "not_registered"
            await wait_for_body_data(page, "verify", "locked", timeout_s=60)
            await browser.screenshot(page, "locked")
            await record_consent(node.ctx.db, node.ctx.events, cid, "guardian:test",
                                 CURRENT_VERSION)
            await page.click("#accept-btn")
            # The node refuses the accept: the page shows the refusal naming the gate.
            refusal = await page.wait_for_selector('#notices li[data-code="bad_state"]',
                                                   timeout=10_000)
            assert "identity" in await refusal.inner_text()
            await wait_for_body_data(page, "state", "verifying", timeout_s=5)
            alert = await alerts.get(timeout=5)
            assert alert["kind"] == "identity.locked" and alert["consultation"] == cid
        await alerts.aclose()
        await guardian.close()
        attempts = await _attempts(node, cid)
        assert [a["outcome"] for a in attempts] == ["not_registered"] * 3
        assert all(a["distance"] > 0.5 for a in attempts)
        kinds = [e["kind"] for e in await node.events(cid)]
        assert "identity.locked" in kinds and "accept.refused" in kinds
        assert "active" not in await node.states(cid)


@pytest.mark.parametrize("attack", ["still_photo", "swapped_photos"])
async def test_photos_fail_the_liveness_challenge(tmp_path: Path, attack: str) -> None:
    async with identity_node(tmp_path, challenge="turn_left", challenge_time_s=6,
                             max_attempts=1) as node:
        if attack == "still_photo":
            camera = make_y4m(tmp_path / "still.y4m", head_and_shoulders(OBAMA), seconds=6)
        else:  # the doctor's photo, then its mirror image: "turned" without turning
            camera = swapped_photos_clip(tmp_path / "swapped.y4m", OBAMA_2)
        booking, guardian, link = await _doctor_joins(node)
        cid = booking.consultation_id
        async with launch_chromium(camera, ARTIFACTS / attack) as browser:
            page = await browser.new_page("doctor")
            await page.goto(link)
            await page.click("#join-btn")
            await wait_for_body_data(page, "verify", "challenge", timeout_s=40)
            await wait_for_body_data(page, "verify", ["failed", "locked"], timeout_s=30)
            assert (await page.evaluate("document.body.dataset.verifyReason")
                    ) == "challenge_not_done"
        await guardian.close()
        attempts = await _attempts(node, cid)
        assert attempts[0]["outcome"] == "challenge_not_done"
        assert attempts[0]["distance"] <= 0.5  # it WAS the doctor's face, but not alive
        assert "active" not in await node.states(cid)
