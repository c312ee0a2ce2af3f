"""Issue 15: questions, complaints and adverse events over HTTP, on a real node.

A guardian's complaint gets a reference number, staff answer and close it, the guardian reads the
answer on their link; a doctor's severe adverse event reaches ops at once; every step is an event
that carries no free text; the regulator export counts them; hostile input is a clear 4xx that
stores nothing and leaves a running call alone; every route refuses the roles it does not name.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from core.alerts import ALERTS
from core.auth import BOUND_ROLES, Role
from core.store import Consultation, records
from core.store.quality import AdverseEvent, Feedback
from server.demo import Booking
from server.quality import feedback_token
from tests.node_fixtures import Node

from .clinical_helpers import active_call, chain_verified, exported

REF = re.compile(r"^TS-\d{8}-\d{4}$")
AE_REF = re.compile(r"^AE-\d{8}-\d{4}$")
SCRIPT = '<script>alert("x")</script><img src=x onerror=alert(1)> 孩子还在发烧'
# Plain text with the characters markup is made of: stored and answered exactly as written.
PLAIN = '孩子体重 < 10kg，体温 >39℃，剂量<5ml? a < b && c > d; &lt;script&gt; 还在发烧'


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _guardian(node: Node, booking: Booking) -> str:
    return node.token(Role.GUARDIAN, booking.guardian_id, booking.consultation_id)


def _doctor(node: Node, booking: Booking) -> str:
    return node.token(Role.DOCTOR, booking.doctor_id, booking.consultation_id)


def _staff(node: Node, role: Role = Role.QUALITY) -> str:
    return node.token(role, f"{role}-1")


async def _call(node: Node, method: str, path: str, token: str | None = None,
                expect: int | None = None, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    headers = {**(_auth(token) if token else {}), **kwargs.pop("headers", {})}
    async with node.session.request(method, node.url + path, headers=headers, timeout=20,
                                    **kwargs) as r:
        body = await r.json()
        if expect is not None:
            assert r.status == expect, (method, path, r.status, body)
        return r.status, body


async def _count(node: Node, model: type) -> int:
    async with node.ctx.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_a_complaint_is_numbered_answered_and_closed(node: Node) -> None:
    booking = await node.book()
    cid, guardian = booking.consultation_id, _guardian(node, booking)
    feedback = f"/api/consultations/{cid}/feedback"
    _, item = await _call(node, "POST", feedback, guardian, 201,
                          json={"kind": "complaint", "category": "waiting", "text": PLAIN})
    assert REF.match(item["ref"]) and item["ref"].endswith("-0001"), item
    assert item["text"] == PLAIN and item["status"] == "open"  # stored as text, as it came
    _, question = await _call(node, "POST", feedback, guardian, 201,
                              json={"kind": "question", "text": "  复诊需要带什么？ "})
    assert question["ref"].endswith("-0002") and question["category"] is None
    assert question["text"] == "复诊需要带什么？"

    # Staff see both open items with the consultation (no names of people), answer one, close it.
    quality = _staff(node)
    _, listing = await _call(node, "GET", "/api/quality/feedback", quality, 200)
    mine = [i for i in listing["items"] if i["consultation_id"] == cid]
    assert [i["ref"] for i in mine] == [item["ref"], question["ref"]]
    assert mine[0]["consultation"]["hospital"].startswith("首都医科大学附属北京儿童医院")
    assert "patient" not in mine[0]["consultation"]
    ref = item["ref"]
    await _call(node, "POST", f"/api/quality/feedback/{ref}/reply", quality, 201,
                json={"text": "非常抱歉让您久等，已反馈科室。"})
    await _call(node, "POST", f"/api/quality/feedback/{ref}/close", quality, 200)
    status, body = await _call(node, "POST", f"/api/quality/feedback/{ref}/reply", quality,
                               json={"text": "again"})
    assert (status, body["error"]["code"]) == (409, "closed")
    status, body = await _call(node, "POST", "/api/quality/feedback/TS-20260101-9999/close",
                               quality)
    assert (status, body["error"]["code"]) == (404, "no_feedback")

    # The guardian reads the answer on the same link; who answered only by role.
    _, mine = await _call(node, "GET", feedback, guardian, 200)
    first = mine["items"][0]
    assert first["status"] == "closed" and first["closed_at"]
    assert first["replies"] == [{"text": "非常抱歉让您久等，已反馈科室。", "by": "quality",
                                 "at": first["replies"][0]["at"]}]
    _, still_open = await _call(node, "GET", "/api/quality/feedback", quality, 200)
    assert [i["ref"] for i in still_open["items"]] == [question["ref"]]
    _, closed = await _call(node, "GET", "/api/quality/feedback?closed=true", quality, 200)
    assert [i["ref"] for i in closed["items"]] == [ref]

    # Every step is an event with the agreed names; none carries the free text.
    events = [e for e in await node.events(cid) if e["kind"].startswith("feedback.")]
    assert [(e["kind"], e["data"]) for e in events] == [
        ("feedback.opened", {"ref": ref, "kind": "complaint", "category": "waiting",
                             "text_sha256": _sha(PLAIN)}),
        ("feedback.opened", {"ref": question["ref"], "kind": "question", "category": None,
                             "text_sha256": _sha("复诊需要带什么？")}),
        ("feedback.replied", {"ref": ref, "by": "quality",
                              "text_sha256": _sha("非常抱歉让您久等，已反馈科室。")}),
        ("feedback.closed", {"ref": ref, "by": "quality"}),
    ]
    assert events[0]["actor"] == f"guardian:{booking.guardian_id}"
    assert events[2]["actor"] == "quality:quality-1"
    assert "孩子" not in json.dumps(await node.events(cid), ensure_ascii=False)
    report = await chain_verified(node.ctx.events, cid)
    assert report.ok, report.problems

    # The regulator export counts them, no text.
    row = (await exported(node.session, node.url, node.token(Role.REGULATOR, "r")))[cid]
    assert row["feedback"] == {"questions": 1, "complaints": 1, "replied": 1, "closed": 1}
    assert "孩子" not in json.dumps(row, ensure_ascii=False)


async def test_the_guardian_reads_the_answer_days_after_the_call_link_expired(
        node: Node) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    call = booking.guardian_link.split("#token=")[1]  # the join link minted at booking
    feedback = f"/api/consultations/{cid}/feedback"
    _, item = await _call(node, "POST", feedback, call, 201,
                          json={"kind": "complaint", "text": "医生迟到了半小时"})
    later = item["feedback_token"]
    claims = node.tokens.verify(later)
    assert (claims.role, claims.subject, claims.consultation_id) == (
        Role.GUARDIAN_FEEDBACK, booking.guardian_id, cid)
    consultation = await records.get_consultation(node.ctx.db, cid)
    assert consultation is not None and consultation.ended_at is None
    until = consultation.scheduled_at + timedelta(days=node.settings.feedback_days)
    assert claims.expires_at == int(until.timestamp())
    assert item["feedback_expires_at"] == datetime.fromtimestamp(claims.expires_at,
                                                                 UTC).isoformat()
    issued = [e for e in await node.events(cid) if e["kind"] == "feedback_token.issued"]
    assert [(e["actor"], e["data"]) for e in issued] == [
        (f"guardian:{booking.guardian_id}", {"expires_at": item["feedback_expires_at"]})]
    assert later not in json.dumps(await node.events(cid))

    # Three days on (the tokens' clock, no waiting): the call link no longer opens anything,
    # the answer written meanwhile is read with the feedback token, and more can be asked.
    node.tokens.clock.fixed = node.tokens.clock.now() + timedelta(days=3)
    answer = "已与医生核实，已致歉并调整排班。"
    await _call(node, "POST", f"/api/quality/feedback/{item['ref']}/reply", _staff(node), 201,
                json={"text": answer})
    status, body = await _call(node, "GET", feedback, call)
    assert (status, body["error"]["code"], body["error"]["message"]) == (
        401, "bad_token", "token expired")
    _, mine = await _call(node, "GET", feedback, later, 200)
    assert [(r["text"], r["by"]) for r in mine["items"][0]["replies"]] == [(answer, "quality")]
    _, more = await _call(node, "POST", feedback, later, 201,
                          json={"kind": "question", "text": "下次复诊怎么预约？"})
    assert "feedback_token" not in more  # its own token already; nothing to stretch
    assert [e["actor"] for e in await node.events(cid) if e["kind"] == "feedback.opened"][-1] \
        == f"guardian_feedback:{booking.guardian_id}"

    # It opens nothing else: no call, no consultation data, no other consultation.
    for method, path in (("GET", "/api/me"), ("GET", "/api/consent"), ("GET", "/api/queue"),
                         ("GET", f"/api/consultations/{cid}/referral"),
                         ("GET", f"/api/consultations/{cid}/events"),
                         ("GET", f"/api/consultations/{cid}/adverse-events"),
                         ("POST", f"/api/consultations/{cid}/adverse-events"),
                         ("GET", "/api/quality/feedback"),
                         ("POST", f"/api/quality/feedback/{item['ref']}/close"),
                         ("GET", "/api/worklist")):
        status, body = await _call(node, method, path, later,
                                   **({"json": {}} if method == "POST" else {}))
        assert (status, body["error"]["code"]) == (403, "wrong_role"), (method, path, body)
    other = await node.book()
    status, body = await _call(node, "GET", f"/api/consultations/{other.consultation_id}"
                                            "/feedback", later)
    assert (status, body["error"]["code"]) == (403, "wrong_consultation")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await node.session.ws_connect(f"{node.url}/ws?token={later}")
    assert refused.value.status == 403

    # And it ends with the period: TC_FEEDBACK_DAYS after the consultation.
    node.tokens.clock.fixed = until + timedelta(seconds=1)
    status, body = await _call(node, "GET", feedback, later)
    assert (status, body["error"]["code"]) == (401, "bad_token")


def test_the_feedback_period_runs_from_the_end_of_the_consultation() -> None:
    slot = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
    booked = Consultation(scheduled_at=slot, ended_at=None)
    assert feedback_token.expiry(booked, 30) == slot + timedelta(days=30)
    late = Consultation(scheduled_at=slot, ended_at=slot + timedelta(hours=3))
    assert feedback_token.expiry(late, 30) == slot + timedelta(days=30, hours=3)
    early = Consultation(scheduled_at=slot, ended_at=slot - timedelta(minutes=10))
    assert feedback_token.expiry(early, 7) == slot + timedelta(days=7)


async def test_no_feedback_token_once_the_period_is_over(node: Node) -> None:
    """A guardian token still valid (minted for a long call) past the period: the item is filed,
    no feedback token comes with it."""
    booking = await node.book()
    cid = booking.consultation_id
    consultation = await records.get_consultation(node.ctx.db, cid)
    assert consultation is not None
    node.tokens.clock.fixed = consultation.scheduled_at + timedelta(
        days=node.settings.feedback_days, seconds=1)
    _, item = await _call(node, "POST", f"/api/consultations/{cid}/feedback",
                          _guardian(node, booking), 201,
                          json={"kind": "question", "text": "还能咨询吗？"})
    assert "feedback_token" not in item
    assert not [e for e in await node.events(cid) if e["kind"] == "feedback_token.issued"]


async def test_reference_numbers_stay_unique_when_filed_at_once(node: Node) -> None:
    booking = await node.book()
    cid, guardian = booking.consultation_id, _guardian(node, booking)
    results = await asyncio.gather(*(
        _call(node, "POST", f"/api/consultations/{cid}/feedback", guardian, 201,
              json={"kind": "question", "text": f"问题 {i}"}) for i in range(8)))
    refs = sorted(body["ref"] for _, body in results)
    assert [r[-4:] for r in refs] == [f"{n:04d}" for n in range(1, 9)]
    assert len({r[:12] for r in refs}) == 1


async def test_a_severe_adverse_event_alerts_ops_at_once(node: Node) -> None:
    booking = await node.book()
    cid, doctor = booking.consultation_id, _doctor(node, booking)
    alerts = await node.ctx.live.subscribe(ALERTS)
    try:
        path = f"/api/consultations/{cid}/adverse-events"
        _, mild = await _call(node, "POST", path, doctor, 201,
                              json={"severity": "mild", "description": "患儿哭闹，画面中断约1分钟"})
        assert AE_REF.match(mild["ref"]) and mild["alerted"] is False
        description = "患儿在通话中出现抽搐，已指导家长拨打120"
        _, severe = await _call(node, "POST", path, doctor, 201,
                                json={"severity": "severe", "description": description})
        assert severe["alerted"] is True and severe["filed_by"] == "doctor"
        alert = await alerts.get(timeout=5)
        assert alert["kind"] == "adverse_event.severe" and alert["consultation"] == cid
        assert alert["ref"] == severe["ref"] and alert["severity"] == "severe"
        assert severe["ref"] in alert["text"] and "抽搐" not in json.dumps(alert,
                                                                          ensure_ascii=False)
    finally:
        await alerts.aclose()

    # Staff handle it: closing before anything is recorded is refused, then it has a record.
    quality, ref = _staff(node), severe["ref"]
    status, body = await _call(node, "POST", f"/api/quality/adverse-events/{ref}/close", quality)
    assert (status, body["error"]["code"]) == (409, "not_handled")
    await _call(node, "POST", f"/api/quality/adverse-events/{ref}/actions", quality, 201,
                json={"action": "contacted_family", "note": "电话随访：已到急诊，情况稳定"})
    await _call(node, "POST", f"/api/quality/adverse-events/{ref}/close", quality, 200)
    _, listing = await _call(node, "GET", "/api/quality/adverse-events", quality, 200)
    assert [i["ref"] for i in listing["items"]] == [mild["ref"]]
    # The doctor reads the handling record of their consultation: who by role, when, what.
    _, mine = await _call(node, "GET", path, doctor, 200)
    record = next(i for i in mine["items"] if i["ref"] == ref)
    assert record["status"] == "closed" and record["closed_by"] == "quality"
    assert [(a["action"], a["by"]) for a in record["actions"]] == [("contacted_family",
                                                                    "quality")]
    # Staff may file one too (for a consultation they name), and the events say who, by role.
    await _call(node, "POST", path, _staff(node, Role.ADMIN), 201,
                json={"severity": "moderate", "description": "家长反映处方剂量疑问"})
    events = [(e["kind"], e["data"]) for e in await node.events(cid)
              if e["kind"].startswith("adverse_event.")]
    assert [(k, {x: d[x] for x in d if x != "text_sha256"}) for k, d in events] == [
        ("adverse_event.filed", {"ref": mild["ref"], "severity": "mild", "by": "doctor"}),
        ("adverse_event.filed", {"ref": ref, "severity": "severe", "by": "doctor"}),
        ("adverse_event.handled", {"ref": ref, "by": "quality", "action": "contacted_family"}),
        ("adverse_event.closed", {"ref": ref, "by": "quality"}),
        ("adverse_event.filed", {"ref": events[-1][1]["ref"], "severity": "moderate",
                                 "by": "admin"}),
    ]
    assert events[1][1]["text_sha256"] == _sha(description)
    row = (await exported(node.session, node.url, node.token(Role.REGULATOR, "r")))[cid]
    assert row["adverse_events"] == {"filed": 3, "severity": {"mild": 1, "moderate": 1,
                                                              "severe": 1},
                                     "handled": 1, "closed": 1}
    assert "抽搐" not in json.dumps(row, ensure_ascii=False)


async def test_staff_cannot_file_on_a_consultation_that_does_not_exist(node: Node) -> None:
    status, body = await _call(node, "POST", "/api/consultations/c_nope/adverse-events",
                               _staff(node), json={"severity": "mild", "description": "x"})
    assert (status, body["error"]["code"]) == (404, "no_consultation")


BAD_FEEDBACK: list[tuple[str, dict[str, Any], int, str, str | None]] = [
    ("empty", {"json": {"kind": "complaint", "text": ""}}, 422, "bad_field", "text"),
    ("blank", {"json": {"kind": "complaint", "text": " \n\t "}}, 422, "bad_field", "text"),
    ("no text", {"json": {"kind": "complaint"}}, 422, "bad_field", "text"),
    ("too long", {"json": {"kind": "complaint", "text": "字" * 2001}}, 422, "bad_field", "text"),
    ("10 MB", {"data": b'{"kind":"complaint","text":"' + b"a" * 10_000_000 + b'"}',
               "headers": {"Content-Type": "application/json"}}, 413, "request_entity_too_large",
     None),
    ("lone surrogate", {"data": b'{"kind":"complaint","text":"\\ud800x"}'}, 422, "bad_field",
     "text"),
    ("control character", {"json": {"kind": "complaint", "text": "a\u0000b"}}, 422,
     "bad_field", "text"),
    ("script tags", {"json": {"kind": "complaint", "text": SCRIPT}}, 422, "markup_not_allowed",
     "text"),
    ("deep JSON", {"data": b"[" * 50_000 + b"]" * 50_000}, 400, "bad_json", None),
    ("not JSON", {"data": b"<script>alert(1)</script>"}, 400, "bad_json", None),
    ("a list", {"json": ["complaint"]}, 400, "bad_json", None),
    ("unknown kind", {"json": {"kind": "praise", "text": "好"}}, 422, "bad_field", "kind"),
    ("unknown category", {"json": {"kind": "question", "category": "<b>", "text": "好"}}, 422,
     "bad_field", "category"),
    ("extra field", {"json": {"kind": "question", "text": "好", "status": "closed"}}, 422,
     "bad_field", "status"),
    ("text not a string", {"json": {"kind": "question", "text": {"$gt": ""}}}, 422,
     "bad_field", "text"),
]


async def test_hostile_input_is_refused_and_the_call_goes_on(node: Node, clips) -> None:  # type: ignore[no-untyped-def]
    booking, guardian_client, doctor_client = await active_call(node, clips)
    cid, guardian = booking.consultation_id, _guardian(node, booking)
    try:
        for name, kwargs, status, code, field in BAD_FEEDBACK:
            got, body = await _call(node, "POST", f"/api/consultations/{cid}/feedback", guardian,
                                    **kwargs)
            assert (got, body["error"]["code"]) == (status, code), (name, body)
            assert body["error"].get("field") == field, (name, body)
        for name, kwargs, *_ in BAD_FEEDBACK[:4]:
            body_ = {"severity": "severe", "description": kwargs.get("json", {}).get("text")}
            got, body = await _call(node, "POST", f"/api/consultations/{cid}/adverse-events",
                                    _doctor(node, booking), json=body_)
            assert got == 422 and body["error"]["field"] == "description", (name, body)
        got, body = await _call(node, "POST", f"/api/consultations/{cid}/adverse-events",
                                _doctor(node, booking),
                                json={"severity": "catastrophic", "description": "x"})
        assert (got, body["error"]["field"]) == (422, "severity")
        got, body = await _call(node, "GET", "/api/quality/feedback?limit=100000", _staff(node))
        assert (got, body["error"]["code"]) == (422, "bad_query")
        got, body = await _call(node, "GET", "/api/quality/feedback?closed=maybe", _staff(node))
        assert (got, body["error"]["code"]) == (422, "bad_query")
        got, body = await _call(node, "POST", "/api/quality/feedback/<script>/reply",
                                _staff(node), json={"text": "x"})
        assert (got, body["error"]["code"]) == (404, "no_feedback")
        assert await _count(node, Feedback) == 0 and await _count(node, AdverseEvent) == 0
        assert not [e for e in await node.events(cid) if e["kind"].startswith(
            ("feedback.", "adverse_event."))]
        # The call did not notice: still active, both sides still receive video.
        assert await node.ctx.lifecycle.state(cid) == "active"
        for side in (guardian_client, doctor_client):
            await side.wait_frames("video", 10)
    finally:
        for side in (guardian_client, doctor_client):
            await side.close()


MARKUP = ['<script>alert(1)</script>', '家长说 <img src=x onerror=alert(1)>', '正文</p>',
          '<!-- 注释 --> 好', '<svg/onload=alert(1)>', '<?php echo 1; ?>', '<B>加粗</B>',
          "<a href='javascript:alert(1)'>点这里</a>", '<iframe src=//x>']


async def test_markup_is_refused_in_every_free_text_field(node: Node) -> None:
    """Questions, complaints, replies, adverse-event reports and handling notes: HTML markup is a
    422 naming the field, and nothing is stored; a lone `<` or `>` is text and goes through."""
    booking = await node.book()
    cid, guardian, quality = booking.consultation_id, _guardian(node, booking), _staff(node)
    _, item = await _call(node, "POST", f"/api/consultations/{cid}/feedback", guardian, 201,
                          json={"kind": "question", "text": PLAIN})
    _, event = await _call(node, "POST", f"/api/consultations/{cid}/adverse-events",
                           _doctor(node, booking), 201,
                           json={"severity": "mild", "description": PLAIN})
    fields = [
        (f"/api/consultations/{cid}/feedback", guardian, {"kind": "complaint"}, "text"),
        (f"/api/quality/feedback/{item['ref']}/reply", quality, {}, "text"),
        (f"/api/consultations/{cid}/adverse-events", _doctor(node, booking),
         {"severity": "severe"}, "description"),
        (f"/api/quality/adverse-events/{event['ref']}/actions", quality,
         {"action": "clinical_review"}, "note"),
    ]
    for path, token, rest, field in fields:
        for text in MARKUP:
            status, body = await _call(node, "POST", path, token, json={**rest, field: text})
            assert (status, body["error"]["code"], body["error"]["field"]) == (
                422, "markup_not_allowed", field), (path, text, body)
            assert "<script>" in body["error"]["zh"] and body["error"]["message"]
    assert await _count(node, Feedback) == 1 and await _count(node, AdverseEvent) == 1
    _, mine = await _call(node, "GET", f"/api/consultations/{cid}/feedback", guardian, 200)
    assert mine["items"][0]["replies"] == [] and mine["items"][0]["status"] == "open"
    _, records = await _call(node, "GET", f"/api/consultations/{cid}/adverse-events",
                             _doctor(node, booking), 200)
    assert records["items"][0]["actions"] == [] and records["items"][0]["status"] == "open"
    assert [e["kind"] for e in await node.events(cid)
            if e["kind"].startswith(("feedback.", "adverse_event."))] == [
        "feedback.opened", "adverse_event.filed"]
    # Plain text with `<` and `>` in it is accepted in each field, exactly as written.
    _, reply = await _call(node, "POST", fields[1][0], quality, 201, json={"text": PLAIN})
    _, step = await _call(node, "POST", fields[3][0], quality, 201,
                          json={"action": "clinical_review", "note": PLAIN})
    assert reply["reply"]["text"] == PLAIN and step["action"]["note"] == PLAIN
    assert item["text"] == PLAIN and event["description"] == PLAIN


async def test_a_complaint_and_an_adverse_event_filed_during_the_call(  # type: ignore[no-untyped-def]
        node: Node, clips) -> None:
    """Both sides joined and talking: the guardian complains from the call page, the doctor files
    a severe adverse event (ops alerted); both are stored and numbered, and the call goes on."""
    booking, guardian_client, doctor_client = await active_call(node, clips)
    cid = booking.consultation_id
    alerts = await node.ctx.live.subscribe(ALERTS)
    try:
        _, item = await _call(node, "POST", f"/api/consultations/{cid}/feedback",
                              _guardian(node, booking), 201,
                              json={"kind": "complaint", "category": "technical",
                                    "text": "医生那边的声音断断续续"})
        assert REF.match(item["ref"]) and item["status"] == "open" and item["feedback_token"]
        _, event = await _call(node, "POST", f"/api/consultations/{cid}/adverse-events",
                               _doctor(node, booking), 201,
                               json={"severity": "severe",
                                     "description": "通话中患儿呼吸急促，已指导家长立即就近急诊"})
        assert AE_REF.match(event["ref"]) and event["alerted"] is True
        alert = await alerts.get(timeout=5)
        assert (alert["kind"], alert["ref"]) == ("adverse_event.severe", event["ref"])
        # The call did not notice: still active, both sides still receive video.
        assert await node.ctx.lifecycle.state(cid) == "active"
        for side in (guardian_client, doctor_client):
            await side.wait_frames("video", 10)
        events = await node.events(cid)
        kinds = [e["kind"] for e in events]
        started = next(i for i, e in enumerate(events)
                       if e["kind"] == "state" and e["data"]["to"] == "active")
        assert kinds.index("feedback.opened") > started  # filed in the active call
        assert kinds.index("adverse_event.filed") > started
        assert not {"participant.left", "participant.lost"} & set(kinds)
        assert (await node.states(cid))[-1] == "active"
    finally:
        await alerts.aclose()
        for side in (guardian_client, doctor_client):
            await side.close()


async def test_too_many_from_one_consultation_is_429(node: Node) -> None:
    booking = await node.book()
    cid, guardian = booking.consultation_id, _guardian(node, booking)
    for i in range(20):
        await _call(node, "POST", f"/api/consultations/{cid}/feedback", guardian, 201,
                    json={"kind": "question", "text": f"第{i}个问题"})
    status, body = await _call(node, "POST", f"/api/consultations/{cid}/feedback", guardian,
                               json={"kind": "question", "text": "再一个"})
    assert (status, body["error"]["code"]) == (429, "too_many") and body["error"]["zh"]


# (method, path, roles allowed); {cid} is the booked consultation, {ref} a made-up number.
ROUTES = [
    ("POST", "/api/consultations/{cid}/feedback", {Role.GUARDIAN, Role.GUARDIAN_FEEDBACK}),
    ("GET", "/api/consultations/{cid}/feedback",
     {Role.GUARDIAN, Role.GUARDIAN_FEEDBACK, Role.QUALITY, Role.ADMIN}),
    ("GET", "/api/quality/feedback", {Role.QUALITY, Role.ADMIN}),
    ("POST", "/api/quality/feedback/TS-20260101-0001/reply", {Role.QUALITY, Role.ADMIN}),
    ("POST", "/api/quality/feedback/TS-20260101-0001/close", {Role.QUALITY, Role.ADMIN}),
    ("POST", "/api/consultations/{cid}/adverse-events",
     {Role.DOCTOR, Role.DOCTOR_DAY, Role.QUALITY, Role.ADMIN}),
    ("GET", "/api/consultations/{cid}/adverse-events",
     {Role.DOCTOR, Role.DOCTOR_DAY, Role.QUALITY, Role.ADMIN}),
    ("GET", "/api/quality/adverse-events", {Role.QUALITY, Role.ADMIN}),
    ("POST", "/api/quality/adverse-events/AE-20260101-0001/actions", {Role.QUALITY, Role.ADMIN}),
    ("POST", "/api/quality/adverse-events/AE-20260101-0001/close", {Role.QUALITY, Role.ADMIN}),
    ("GET", "/api/consultations/{cid}/events",
     {Role.AUDITOR, Role.ADMIN, Role.OPS, Role.DOCTOR, Role.QUALITY}),
]


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES)
async def test_every_route_refuses_the_roles_it_does_not_name(
        node: Node, method: str, path: str, allowed: set[Role]) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    url = path.format(cid=cid)
    body = {"json": {}} if method == "POST" else {}
    status, error = await _call(node, method, url, None, **body)
    assert (status, error["error"]["code"]) == (401, "no_token")
    status, error = await _call(node, method, url, "not.a.token", **body)
    assert (status, error["error"]["code"]) == (401, "bad_token")
    expired = node.token(Role.QUALITY, "q", ttl=-10)
    status, error = await _call(node, method, url, expired, **body)
    assert (status, error["error"]["code"]) == (401, "bad_token")
    for role in Role:
        bound = cid if role in BOUND_ROLES else None
        # A day token opens its own doctor's consultations: the booked one's doctor.
        subject = booking.doctor_id if role == Role.DOCTOR_DAY else f"{role}-1"
        status, error = await _call(node, method, url, node.token(role, subject, bound),
                                    **body)
        if role in allowed:
            assert status not in (401, 403), (role, status, error)
        else:
            assert (status, error["error"]["code"]) == (403, "wrong_role"), (role, error)
    for role in allowed & BOUND_ROLES:
        if "{cid}" in path:  # a bound role's token is for its own consultation only
            other = node.token(role, f"{role}-1", "c_someone_else")
            status, error = await _call(node, method, url, other, **body)
            assert (status, error["error"]["code"]) == (403, "wrong_consultation")
