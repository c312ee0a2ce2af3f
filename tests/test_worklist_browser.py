"""The doctor's day in real headless Chromium: the doctor opens the worklist with a day token, sees
a guardian waiting (whose own page says where they are in the queue), reports an adverse event on
a consultation finished earlier (its call page long closed), and joins from the list."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bench.chromium import launch_chromium, wait_for_body_data
from bench.faces import ADULT_A, CHILD_A, OBAMA, make_y4m, side_by_side
from core.auth import Role
from core.store import Consultation

from .node_fixtures import Node
from .worklist_fixtures import book_at, guardian_token, make_doctor, today_at

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "worklist"

pytestmark = pytest.mark.browser


async def test_a_doctor_sees_a_guardian_waiting_and_joins_from_the_worklist(
        node: Node, tmp_path: Path) -> None:
    doctor = await make_doctor(node)
    first = today_at(30)
    earlier = await book_at(node, doctor, first, "王小华")
    mine = await book_at(node, doctor, first + timedelta(minutes=10), "李小明")
    done = await book_at(node, doctor, today_at(50), "赵小平")  # seen this morning, page closed
    async with node.ctx.db.session() as s, s.begin():
        await s.execute(update(Consultation).where(Consultation.id == done.cid).values(
            state="ended", started_at=today_at(50), ended_at=today_at(40)))
    # The earlier family is already waiting (an aiortc client): they are ahead in the queue.
    ahead = node.client(guardian_token(node, earlier))
    await ahead.connect()
    admin = node.token(Role.ADMIN, "scheduler")
    async with node.session.post(f"{node.url}/api/admin/doctors/{doctor.id}/day-token",
                                 json={}, headers={"Authorization": f"Bearer {admin}"}) as r:
        assert r.status == 201
        worklist_link = (await r.json())["link"].replace(node.settings.public_url, node.url)
    guardian_cam = make_y4m(tmp_path / "guardian.y4m", side_by_side(ADULT_A, CHILD_A), seconds=4)
    doctor_cam = make_y4m(tmp_path / "doctor.y4m", OBAMA, seconds=4)
    try:
        async with launch_chromium(guardian_cam, ARTIFACTS / "guardian") as g_browser, \
                launch_chromium(doctor_cam, ARTIFACTS / "doctor") as d_browser:
            guardian = await g_browser.new_page("guardian")
            await guardian.goto(f"{node.url}/call#token={guardian_token(node, mine)}")
            await wait_for_body_data(guardian, "phase", "prejoin")
            await guardian.wait_for_selector("#consent-text .consent-section", state="visible")
            await guardian.check("#consent-check")
            await guardian.click("#join-btn")
            await wait_for_body_data(guardian, "state", "waiting")
            # Where the guardian is in the doctor's queue: one family ahead.
            await wait_for_body_data(guardian, "queue", "2")
            assert "前面还有 1 位" in await guardian.inner_text("#queue-info")
            await g_browser.screenshot(guardian, "guardian-waiting")

            doctor_page = await d_browser.new_page("doctor")
            await doctor_page.goto(worklist_link)
            await wait_for_body_data(doctor_page, "phase", "live")
            row = f"tr[data-cid='{mine.cid}']"
            await doctor_page.wait_for_selector(
                f"{row}[data-guardian='waiting'][data-consent='given']")
            await wait_for_body_data(doctor_page, "waiting", "2")
            text = await doctor_page.inner_text(row)
            assert "李*明" in text and "初诊" in text and "儿童" in text
            assert "李小明" not in await doctor_page.inner_text("body")  # least data
            await d_browser.screenshot(doctor_page, "worklist")

            # An adverse event on the finished consultation, from its row, with the day token.
            await doctor_page.click(f"tr[data-cid='{done.cid}'] button.adverse")
            await doctor_page.wait_for_selector("#adverse-dialog[open]")
            assert "赵*平" in await doctor_page.inner_text("#adverse-for")
            await doctor_page.check("#ae-severity-moderate")
            await doctor_page.fill("#ae-text", "家长来电：患儿服药后出现皮疹，已嘱停药并线下就诊")
            await doctor_page.click("#adverse-submit-btn")
            await wait_for_body_data(doctor_page, "adverse", "filed")
            assert (await doctor_page.inner_text("#adverse-ref")).startswith("AE-")
            await d_browser.screenshot(doctor_page, "worklist-adverse-event")
            await doctor_page.click("#adverse-cancel-btn")
            await doctor_page.wait_for_selector("#adverse-dialog", state="hidden")

            await doctor_page.click(f"{row} button")
            await doctor_page.wait_for_url("**/call#token=*")
            await wait_for_body_data(doctor_page, "phase", "prejoin")
            assert await doctor_page.evaluate("document.body.dataset.role") == "doctor"
            await doctor_page.click("#join-btn")
            await wait_for_body_data(doctor_page, "state", "verifying")
            await wait_for_body_data(guardian, "state", "verifying")
            # With the doctor: no queue any more.
            await guardian.wait_for_selector("#queue-info", state="hidden")
            await d_browser.screenshot(doctor_page, "doctor-joined")
    finally:
        await ahead.close()
    kinds = [(e["kind"], e["actor"]) for e in await node.events(mine.cid)]
    assert ("worklist.join", f"doctor_day:{doctor.id}") in kinds
    assert ("participant.joined", f"doctor:{doctor.id}") in kinds
    filed = [(e["actor"], e["data"]["severity"]) for e in await node.events(done.cid)
             if e["kind"] == "adverse_event.filed"]
    assert filed == [(f"doctor_day:{doctor.id}", "moderate")]
