"""Issue 15 through the real pages in Chromium: after a call that ended in a referral, the
guardian complains on the same link (markup refused, plain text shown as text), the doctor files a
severe adverse event, quality staff answer and handle both on the quality page, and the guardian
reads the answer on their link, also days later when the link's own token has expired.

The call itself runs between aiortc peers (cheap); Chromium only opens the three pages.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from bench.chromium import launch_chromium, wait_for_body_data
from bench.faces import ADULT_A, make_y4m
from core.auth import Role

from .clinical_helpers import active_call, chain_verified
from .node_fixtures import Node

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser_feedback"
MARKUP = ('等了40分钟医生才上线 <script>window.__owned = 1</script>'
          '<img src=x onerror="window.__owned = 2">')
# Plain text that an HTML parser would change (entities) or that holds a lone `<`: it must show
# exactly as written.
COMPLAINT = '等了40分钟医生才上线，孩子体重 < 10kg，&lt;img src=x onerror=alert(1)&gt; &amp;'
ANSWER = "非常抱歉，已核实为排班延误，已向科室反馈。&lt;b&gt;不是HTML&lt;/b&gt; 1 < 2"

pytestmark = pytest.mark.browser


async def test_guardian_complains_after_the_call_and_reads_the_answer(
        node: Node, clips, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    booking, guardian_client, doctor_client = await active_call(node, clips)
    cid = booking.consultation_id
    try:
        await doctor_client.send({"type": "terminate", "reason": "needs_in_person", "referral": {
            "hospital": "首都医科大学附属首都儿童医学中心", "department": "儿童保健科",
            "urgency": "routine", "note": ""}})
        await guardian_client.expect("state", state="terminated")
    finally:
        for side in (guardian_client, doctor_client):
            await side.close()
    guardian_link = booking.guardian_link.replace(node.settings.public_url, node.url)
    doctor_link = booking.doctor_link.replace(node.settings.public_url, node.url)
    quality_link = f"{node.url}/quality#token={node.token(Role.QUALITY, 'qa-1')}"
    camera = make_y4m(tmp_path / "camera.y4m", ADULT_A, seconds=1)

    async with launch_chromium(camera, ARTIFACTS) as browser:
        guardian = await browser.new_page("guardian")
        dialogs: list[str] = []
        guardian.on("dialog", lambda d: dialogs.append(d.message))

        # The page after the end, with the referral: the complaint form is right there.
        await guardian.goto(guardian_link)
        await wait_for_body_data(guardian, "phase", "final")
        await wait_for_body_data(guardian, "referral", "shown")
        await guardian.click("#feedback-open-btn")
        await guardian.wait_for_selector("#feedback-dialog[open]")
        await guardian.click("#feedback-submit-btn")  # empty: refused in the page
        assert "请填写内容" in await guardian.inner_text("#feedback-error")
        await guardian.check("#fb-kind-complaint")
        await guardian.select_option("#fb-category", "waiting")
        await guardian.fill("#fb-text", MARKUP)  # markup: refused by the node, said so
        await guardian.click("#feedback-submit-btn")
        await guardian.wait_for_selector("#feedback-error:not([hidden])")
        assert "网页代码" in await guardian.inner_text("#feedback-error")
        assert await guardian.input_value("#fb-text") == MARKUP  # kept, to be corrected
        await guardian.fill("#fb-text", COMPLAINT)
        await guardian.click("#feedback-submit-btn")
        await wait_for_body_data(guardian, "feedback", "sent")
        ref = (await guardian.inner_text("#feedback-ref")).strip()
        assert re.fullmatch(r"TS-\d{8}-0001", ref), ref
        # The answer may take days: the page keeps the feedback token it was handed.
        assert "&feedback=" in guardian.url
        await browser.screenshot(guardian, "guardian-complaint-sent")
        await guardian.click("#feedback-cancel-btn")
        item = f'#feedback-list li[data-ref="{ref}"]'
        await guardian.wait_for_selector(item)
        assert COMPLAINT in await guardian.inner_text(item)  # as text, tags and all
        injected = await guardian.evaluate(
            "() => [document.querySelectorAll('#feedback-list script, #feedback-list img')"
            ".length, window.__owned || 0]")
        assert injected == [0, 0] and dialogs == []

        # The doctor's page after the end: a severe adverse event, which alerts ops.
        doctor = await browser.new_page("doctor")
        await doctor.goto(doctor_link)
        await wait_for_body_data(doctor, "phase", "final")
        await doctor.click("#adverse-open-btn")
        await doctor.check("#ae-severity-severe")
        await doctor.fill("#ae-text", "转诊前患儿出现高热惊厥，已指导家长立即就近急诊")
        await doctor.click("#adverse-submit-btn")
        await wait_for_body_data(doctor, "adverse", "filed")
        ae_ref = (await doctor.inner_text("#adverse-ref")).strip()
        assert ae_ref.startswith("AE-") and "已立即通知" in await doctor.inner_text(
            "#adverse-done")

        # Quality staff: both items with the consultation, its timeline, answer and handle.
        desk = await browser.new_page("quality")
        await desk.goto(quality_link)
        await wait_for_body_data(desk, "phase", "ready")
        complaint = desk.locator(f'#feedback-items li[data-ref="{ref}"]')
        assert COMPLAINT in await complaint.inner_text()
        assert cid in await complaint.locator(".consult-line").inner_text()
        await complaint.locator("summary").click()
        await complaint.locator('.timeline li[data-kind="feedback.opened"]').wait_for()
        await complaint.locator("textarea.reply-text").fill(ANSWER)
        await complaint.locator(".reply-btn").click()
        await desk.locator(f'#feedback-items li[data-ref="{ref}"][data-status="replied"]'
                           ).wait_for()
        event = desk.locator(f'#adverse-items li[data-ref="{ae_ref}"]')
        await event.locator(".close-btn").click()  # nothing recorded yet: refused, said so
        await event.locator(".item-error:not([hidden])").wait_for()
        assert "尚无处置记录" in await event.locator(".item-error").inner_text()
        await event.locator("select.action-kind").select_option("contacted_family")
        await event.locator("textarea.action-note").fill("电话随访，患儿已在急诊观察")
        await event.locator(".action-btn").click()
        await desk.locator(f'#adverse-items li[data-ref="{ae_ref}"][data-status="handling"]'
                           ).wait_for()
        await browser.screenshot(desk, "quality-desk")

        # The guardian opens the same link again: the answer is there, as text.
        await guardian.reload()
        await wait_for_body_data(guardian, "phase", "final")
        answered = guardian.locator(f'#feedback-list li[data-ref="{ref}"][data-status="replied"]')
        await answered.wait_for()
        assert ANSWER in await answered.locator(".thread-reply").inner_text()
        assert await guardian.locator("#feedback-list b").count() == 0
        await guardian.locator("#feedback-section").screenshot(
            path=str(ARTIFACTS / "guardian-reads-answer.png"), timeout=10_000)

        # Three days on the join link has expired; opened again as it came, it still shows the
        # answer (the feedback token this browser kept), and nothing else of the consultation.
        node.tokens.clock.fixed = node.tokens.clock.now() + timedelta(days=3)
        later = await browser.new_page("guardian-days-later")
        await later.goto(guardian_link)
        await wait_for_body_data(later, "access", "feedback")
        answered = later.locator(f'#feedback-list li[data-ref="{ref}"][data-status="replied"]')
        await answered.wait_for()
        assert ANSWER in await answered.locator(".thread-reply").inner_text()
        assert "已过期" in await later.inner_text("#outcome-title")
        assert await later.locator("#referral").is_hidden()
        await browser.screenshot(later, "guardian-days-later")

    kinds = [e["kind"] for e in await node.events(cid)]
    for kind in ("feedback.opened", "feedback.replied", "adverse_event.filed",
                 "adverse_event.handled"):
        assert kind in kinds, kind
    report = await chain_verified(node.ctx.events, cid)
    assert report.ok, report.problems
