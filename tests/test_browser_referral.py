"""Consent, then the doctor terminates with a referral, through the real pages in Chromium.

The doctor fills the termination dialog; the guardian's page shows the referral (emergency in
red, printable, with the consultation number); media stops on both sides within 1 s of the
click; the event log and the regulator export carry it; the page opened later shows it again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.chromium import launch_chromium, remote_video_progress, wait_for_body_data
from bench.faces import ADULT_A, CHILD_A, OBAMA, make_y4m, side_by_side
from core.auth import Role

from .clinical_helpers import around_today, chain_verified
from .node_fixtures import Node

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser_referral"

pytestmark = pytest.mark.browser

# Record when the remote video last presented a frame, and keep its tracks to check they end.
TRACK_FRAMES_JS = """
() => {
  const v = document.getElementById('remote-video');
  window.__tracks = v.srcObject ? v.srcObject.getTracks() : [];
  window.__lastFrame = Date.now();
  const tick = () => { window.__lastFrame = Date.now(); v.requestVideoFrameCallback(tick); };
  v.requestVideoFrameCallback(tick);
}
"""
MEDIA_STOPPED_JS = """
() => Date.now() - window.__lastFrame > 500
  && window.__tracks.length > 0 && window.__tracks.every(t => t.readyState === 'ended')
"""


async def test_consent_then_doctor_terminates_with_referral(node: Node, tmp_path: Path) -> None:
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

        # The guardian reads the consent text (rules, risks, recording) and must tick it.
        await wait_for_body_data(guardian, "phase", "prejoin")
        await guardian.wait_for_selector("#consent-text .consent-section", state="visible")
        assert "录音录像" in await guardian.inner_text("#consent-text")
        assert await guardian.is_disabled("#join-btn")
        await g_browser.screenshot(guardian, "guardian-consent")
        await guardian.check("#consent-check")
        assert await guardian.is_enabled("#join-btn")
        await guardian.click("#join-btn")
        await wait_for_body_data(guardian, "state", "waiting")
        await doctor.click("#join-btn")
        await wait_for_body_data(doctor, "state", "verifying")
        await wait_for_body_data(doctor, "consent", "given")
        assert "知情同意" in await doctor.inner_text("#consent-badge")
        await remote_video_progress(guardian, timeout_s=30)
        await remote_video_progress(doctor, timeout_s=30)

        await doctor.click("#accept-btn")
        await wait_for_body_data(guardian, "state", "active")
        await wait_for_body_data(doctor, "state", "active")
        await remote_video_progress(guardian, timeout_s=10)
        await remote_video_progress(doctor, timeout_s=10)

        # The doctor's termination dialog: an incomplete form is refused in the page.
        await doctor.click("#terminate-btn")
        await doctor.wait_for_selector("#terminate-dialog[open]")
        await doctor.click("#terminate-submit-btn")
        assert "转诊医院" in await doctor.inner_text("#terminate-error")
        assert await doctor.evaluate("() => document.body.dataset.state") == "active"
        await doctor.select_option("#term-reason", "needs_in_person")
        await doctor.fill("#term-hospital", "首都医科大学附属北京儿童医院")
        await doctor.fill("#term-department", "儿科急诊")
        await doctor.check("#term-urgency-emergency")
        await doctor.fill("#term-note", "孩子需立即线下检查，请带好既往病历。")
        await d_browser.screenshot(doctor, "doctor-terminate-dialog")

        for page in (guardian, doctor):
            await page.evaluate(TRACK_FRAMES_JS)
        clicked = await doctor.evaluate(
            "() => { const t = Date.now();"
            " document.getElementById('terminate-submit-btn').click(); return t; }")

        await wait_for_body_data(guardian, "phase", "final")
        await wait_for_body_data(doctor, "phase", "final")
        await wait_for_body_data(guardian, "state", "terminated")
        for page in (guardian, doctor):
            await page.wait_for_function(MEDIA_STOPPED_JS, timeout=5_000, polling=100)
            last = await page.evaluate("() => window.__lastFrame")
            assert last - clicked < 1000, f"frames went on {last - clicked} ms after the click"

        # The guardian's page shows the referral: emergency in red, with the consultation number.
        await wait_for_body_data(guardian, "referral", "shown")
        text = await guardian.inner_text("#referral")
        for expected in ("首都医科大学附属北京儿童医院", "儿科急诊", cid, "立即前往急诊",
                         "孩子需立即线下检查"):
            assert expected in text, (expected, text)
        red = await guardian.evaluate(
            "() => getComputedStyle(document.getElementById('referral-urgency')).backgroundColor")
        assert red == "rgb(180, 35, 24)", red
        await g_browser.screenshot(guardian, "guardian-referral")
        await guardian.emulate_media(media="print")
        assert await guardian.is_hidden("#print-referral-btn")
        await g_browser.screenshot(guardian, "guardian-referral-print")
        await guardian.emulate_media(media="screen")
        await wait_for_body_data(doctor, "referral", "shown")

        # Opened again later by the same link: the outcome and the referral.
        later = await g_browser.new_page("guardian-later")
        await later.goto(guardian_link)
        await wait_for_body_data(later, "phase", "final")
        await wait_for_body_data(later, "referral", "shown")
        assert "儿科急诊" in await later.inner_text("#referral")

    assert await node.states(cid) == ["waiting", "verifying", "active", "terminated"]
    events = await node.events(cid)
    kinds = [e["kind"] for e in events]
    assert kinds.index("consent.shown") < kinds.index("consent.accepted") < kinds.index(
        "state", kinds.index("consent.accepted"))
    final = [e for e in events if e["kind"] == "state"][-1]
    assert final["data"]["referral"]["department"] == "儿科急诊"
    assert final["data"]["termination"]["reason"] == "needs_in_person"
    report = await chain_verified(node.ctx.events, cid)
    assert report.ok, report.problems
    assert node.rooms.get(cid) is None

    token = node.token(Role.REGULATOR, "supervision")
    async with node.session.get(
            f"{node.url}/api/export/consultations?{around_today()}",
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
        rows = [json.loads(line) for line in (await resp.text()).splitlines()]
    row = next(r for r in rows if r["consultation_id"] == cid)
    assert row["termination_reason"] == "needs_in_person"
    assert row["referral_target"]["urgency"] == "emergency"
