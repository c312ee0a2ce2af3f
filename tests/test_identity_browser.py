"""Doctor verification through the real page in headless Chromium (issues 3 and 14).

The doctor's fake camera is a y4m built from real photos of the doctor: obama2 (head turned to
the doctor's right), obama.jpg (facing the camera), obama2's mirror image (turned to the left)
make a head turn through its middle pose; a single still with only pan/zoom is a photo held up to
the camera, and obama2 cut straight to its mirror image is one photo swapped for another. A clip
that loops is what a replay is: it does its actions at its own moments. A doctor who acts when
asked is a `LiveCamera`, whose frames the test rewrites after the page announced each action.
The doctor is enrolled with obama.jpg. The guardian is a scripted client (only its presence
matters).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import ImageOps

from bench.chromium import body_data, launch_chromium, wait_for_body_data
from bench.faces import (
    BIDEN,
    OBAMA,
    OBAMA_2,
    LiveCamera,
    Segment,
    empty_scene,
    head_and_shoulders,
    make_y4m,
)
from bench.identity import until
from core.consent import CURRENT_VERSION, record_consent

from .identity_fixtures import enroll_photo, identity_node, identity_service
from .node_fixtures import Node

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "identity"

pytestmark = pytest.mark.browser


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


async def _turn(node: Node, cid: str, camera: LiveCamera, end) -> None:
    """Through facing the camera to `end`, the middle pose held until the node judged two
    frames of it (Chromium's camera picks a rewrite up within about half a second)."""
    verification = identity_service(node).verifications[cid]
    camera.show(head_and_shoulders(OBAMA))
    await until(lambda: verification.pose is not None and abs(verification.pose.yaw) < 0.08,
                20, "the turn's middle pose seen")
    seen = verification.poses_seen
    await until(lambda: verification.poses_seen >= seen + 1, 20, "a second middle pose seen")
    camera.show(end)


async def test_no_face_is_guidance_then_the_actions_in_order_pass_and_start(
        tmp_path: Path) -> None:
    """Nobody on camera for a while: the page says what to fix and no attempt is used. Then the
    doctor sits down and does each action once it is announced: verified at the first attempt."""
    async with identity_node(tmp_path, challenge="turn_left,turn_right", challenge_time_s=12,
                             attempt_time_s=3.0, retry_pause_s=0.5) as node:
        right = head_and_shoulders(OBAMA_2)
        left = ImageOps.mirror(right)
        camera = LiveCamera(tmp_path / "live.y4m", empty_scene((640, 480)))
        booking, guardian, link = await _doctor_joins(node)
        cid = booking.consultation_id
        async with launch_chromium(camera.path, ARTIFACTS / "registered") as browser:
            page = await browser.new_page("doctor")
            await page.goto(link)
            await page.click("#join-btn")
            await wait_for_body_data(page, "verify", "guidance", timeout_s=40)
            assert (await body_data(page))["verifyReason"] == "no_face"
            panel = await page.inner_text("#verify-panel")
            assert "face the camera" in panel and "不计入" in panel, panel
            await browser.screenshot(page, "guidance-no-face")
            verifying = identity_service(node).verifications[cid]
            await until(lambda: verifying.last is not None, 20, "an attempt ended on guidance")
            assert verifying.last.outcome == "no_face"
            camera.show(right)
            for index, (action, end) in enumerate((("turn_left", left), ("turn_right", right)),
                                                  1):
                await wait_for_body_data(page, "verifyStepIndex", f"{index}/2", timeout_s=40)
                data = await body_data(page)
                assert (data["verify"], data["verifyChallenge"]) == ("challenge", action), data
                assert f"{index}/2" in await page.inner_text("#verify-panel h3")
                await browser.screenshot(page, f"action-{index}")
                await _turn(node, cid, camera, end)
            await wait_for_body_data(page, "verify", "verified", timeout_s=30)
            await browser.screenshot(page, "verified")
            await record_consent(node.ctx.db, node.ctx.events, cid, "guardian:test",
                                 CURRENT_VERSION)
            await page.click("#accept-btn")
            await wait_for_body_data(page, "state", "active", timeout_s=15)
        await guardian.close()
        attempts = await _attempts(node, cid)
        assert [(a["outcome"], a["attempt"]) for a in attempts] == [("verified", 1)]
        assert attempts[0]["distance"] <= 0.5 and attempts[0]["frames"] >= 3
        assert attempts[0]["challenge"] == "turn_left,turn_right"
        assert attempts[0]["evidence_sha256"]
        guidance = [e["data"] for e in await node.events(cid) if e["kind"] == "identity.guidance"]
        assert guidance and guidance[0]["reason"] == "no_face", guidance
        assert "active" in await node.states(cid)


async def test_a_clip_doing_the_actions_in_the_wrong_order_fails(tmp_path: Path) -> None:
    """Asked to turn left then right; the replayed clip turns right (its own order, over and
    over): `challenge_wrong`, which counts, so one such attempt locks with max_attempts=1."""
    async with identity_node(tmp_path, challenge="turn_left,turn_right",
                             max_attempts=1) as node:
        right = head_and_shoulders(OBAMA_2)
        camera = make_y4m(tmp_path / "right-turns.y4m", [
            Segment(ImageOps.mirror(right), 2.0), Segment(head_and_shoulders(OBAMA), 1.0),
            Segment(right, 2.0)])  # loops back to the left: a jump, not a turn
        booking, guardian, link = await _doctor_joins(node)
        cid = booking.consultation_id
        async with launch_chromium(camera, ARTIFACTS / "wrong-order") as browser:
            page = await browser.new_page("doctor")
            await page.goto(link)
            await page.click("#join-btn")
            await wait_for_body_data(page, "verify", ["failed", "locked"], timeout_s=60)
            assert (await body_data(page))["verifyReason"] == "challenge_wrong"
            await wait_for_body_data(page, "verify", "locked", timeout_s=10)
        await guardian.close()
        attempts = await _attempts(node, cid)
        assert [(a["outcome"], a["rival"], a["steps_done"]) for a in attempts] == [
            ("challenge_wrong", "turn_right", 0)]
        assert attempts[0]["distance"] <= 0.5  # it WAS the doctor's face, but not live


async def test_a_clip_doing_the_action_too_early_does_not_pass(tmp_path: Path) -> None:
    """The doctor turns left while trying the camera before joining (the pre-call preview opens
    the stream the call then sends), then holds still: the turn asked for afterwards is not seen
    (guidance, no attempt used). Joining only once the preview is past the turn makes the turn
    come before anything can be asked, whatever the timing (with the turn at the start of the
    call, a fast node could announce before it and rightly see a live turn)."""
    async with identity_node(tmp_path, challenge="turn_left", challenge_time_s=6) as node:
        right = head_and_shoulders(OBAMA_2)
        camera = make_y4m(tmp_path / "early.y4m", [
            Segment(right, 0.5), Segment(head_and_shoulders(OBAMA), 1.0),
            Segment(ImageOps.mirror(right), 40.0)])
        booking, guardian, link = await _doctor_joins(node)
        cid = booking.consultation_id
        async with launch_chromium(camera, ARTIFACTS / "too-early") as browser:
            page = await browser.new_page("doctor")
            await page.goto(link)
            await page.click("#precall-start-btn")
            await page.wait_for_function(
                "document.querySelector('#precall-video').currentTime >= 2.0", timeout=15_000)
            await page.click("#join-btn")
            await wait_for_body_data(page, "verify", "challenge", timeout_s=40)
            await wait_for_body_data(page, "verify", ["guidance", "verified", "failed"],
                                     timeout_s=30)
            data = await body_data(page)
            assert (data["verify"], data["verifyReason"]) == ("guidance", "challenge_not_done")
        await guardian.close()
        assert await _attempts(node, cid) == []  # not verified, and no attempt used
        guidance = [e["data"] for e in await node.events(cid) if e["kind"] == "identity.guidance"]
        assert guidance[0]["reason"] == "challenge_not_done" and guidance[0]["steps_done"] == 0


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
    """A photo never passes, and never locks the doctor out either: guidance, no attempt used."""
    async with identity_node(tmp_path, challenge="turn_left", challenge_time_s=6) as node:
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
            await wait_for_body_data(page, "verify", ["guidance", "failed", "verified"],
                                     timeout_s=30)
            assert (await page.evaluate("document.body.dataset.verifyReason")
                    ) == "challenge_not_done"
        await guardian.close()
        assert await _attempts(node, cid) == []
        guidance = [e["data"] for e in await node.events(cid) if e["kind"] == "identity.guidance"]
        assert guidance[0]["reason"] == "challenge_not_done", guidance
        assert "active" not in await node.states(cid)
