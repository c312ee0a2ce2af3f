"""Termination with referral, and consent, through a real node with real aiortc peers."""

from __future__ import annotations

import json
import time
from typing import Any, get_args

import pytest
from sqlalchemy import func, select

from core.auth import Role
from core.consent import CURRENT_VERSION
from core.lifecycle import State, TransitionError
from core.referral import ReferralTarget, terminate
from core.store import SYSTEM_CHAIN
from core.store.clinical import DOCTOR_REASONS, TERMINATION_REASONS, Referral
from signaling import client_messages

from .clinical_helpers import active_call, around_today, chain_verified, give_consent
from .node_fixtures import Node

REFERRAL = {"hospital": "首都医科大学附属北京儿童医院", "department": "急诊科",
            "urgency": "emergency", "note": "请立即前往急诊，携带既往病历。"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _get(node: Node, path: str, token: str) -> tuple[int, Any, str]:
    async with node.session.get(node.url + path, headers=_bearer(token)) as resp:
        text = await resp.text()
        kind = resp.headers.get("Content-Type", "")
        return resp.status, (json.loads(text) if "json" in kind and "ndjson" not in kind
                             else text), kind


def test_one_list_of_the_reasons_a_doctor_may_give() -> None:
    """The `terminate` message takes the stored reasons but the identity checks' own, from the
    one definition (it was written out again in the protocol and in referral.py)."""
    assert client_messages.DOCTOR_REASONS is DOCTOR_REASONS
    assert get_args(client_messages.Terminate.model_fields["reason"].annotation) == DOCTOR_REASONS
    assert set(TERMINATION_REASONS) - set(DOCTOR_REASONS) == {"doctor_identity_lost"}


async def _referrals(node: Node) -> int:
    async with node.ctx.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(Referral)) or 0)



async def test_doctor_terminates_with_referral(node: Node, clips) -> None:
    booking, guardian, doctor = await active_call(node, clips)
    cid = booking.consultation_id
    try:
        clicked = time.monotonic()
        await doctor.send({"type": "terminate", "reason": "condition_changed", "id": 9,
                           "referral": REFERRAL})
        state = await guardian.expect("state", state="terminated")
        assert state["reason"] == "condition_changed"
        await guardian.expect("closed", timeout=5)
        await doctor.expect("closed", timeout=5)
        assert time.monotonic() - clicked < 1.0
        assert node.rooms.get(cid) is None
        for side in (guardian, doctor):
            assert side.pc is None or side.pc.connectionState in ("closed", "failed",
                                                                  "connected")
    finally:
        await guardian.close()
        await doctor.close()
    assert await node.states(cid) == ["waiting", "verifying", "active", "terminated"]
    last = [e for e in await node.events(cid) if e["kind"] == "state"][-1]
    assert last["actor"] == f"doctor:{booking.doctor_id}"
    assert last["data"]["termination"] == {"reason": "condition_changed", "text": None}
    assert last["data"]["referral"]["hospital"] == REFERRAL["hospital"]
    assert last["data"]["referral"]["urgency"] == "emergency"
    report = await chain_verified(node.ctx.events, cid)
    assert report.ok, report.problems

    # Retrievable later by link, by the guardian and the doctor; not by another consultation.
    g_token = booking.guardian_link.split("#token=")[1]
    status, body, _ = await _get(node, f"/api/consultations/{cid}/referral", g_token)
    assert status == 200
    assert body["referral"] == REFERRAL and body["reason"] == "condition_changed"
    assert body["consultation"]["id"] == cid and body["consultation"]["state"] == "terminated"
    d_token = booking.doctor_link.split("#token=")[1]
    assert (await _get(node, f"/api/consultations/{cid}/referral", d_token))[0] == 200
    other = await node.book()
    status, body, _ = await _get(node, f"/api/consultations/{cid}/referral",
                                 other.guardian_link.split("#token=")[1])
    assert status == 403
    status, body, _ = await _get(node, f"/api/consultations/{other.consultation_id}/referral",
                                 other.guardian_link.split("#token=")[1])
    assert status == 404 and body["error"]["code"] == "no_referral"

    # The regulator's export carries it; the export is itself an event.
    regulator = node.token(Role.REGULATOR, "supervision-platform")
    status, text, kind = await _get(node, f"/api/export/consultations?{around_today()}",
                                    regulator)
    assert status == 200 and kind.startswith("application/x-ndjson")
    lines = {r["consultation_id"]: r for r in map(json.loads, text.splitlines())}
    row = lines[cid]
    assert row["state"] == "terminated" and row["termination_reason"] == "condition_changed"
    assert row["referral_target"] == {"hospital": REFERRAL["hospital"], "department": "急诊科",
                                      "urgency": "emergency"}
    assert row["doctor_licence"] == "110110000012345" and row["hospital"]["id"] == "h_bj_bch"
    assert row["consent"]["version"] == CURRENT_VERSION
    assert row["eligibility"]["allowed"] is True
    assert row["verification"] is None  # identity checks are off for this node
    assert row["guardian"] is None  # and guardian presence
    recording = row["recording_integrity"]
    assert recording["segments"] >= 2 and recording["failed"] is False, recording
    assert recording["last_verification"] is None  # no auditor has checked the files yet
    assert "note" not in json.dumps(row["referral_target"])  # least data: no clinical note
    assert "李" not in text  # no names
    exports = [e for e in await node.ctx.events.events(SYSTEM_CHAIN)
               if e.kind == "export.consultations"]
    assert exports[-1].actor == "regulator:supervision-platform"
    assert exports[-1].data["count"] == len(lines)


async def test_export_bad_queries_and_roles(node: Node) -> None:
    admin = node.token(Role.ADMIN, "a")
    for query in ("", "?from=2026-01-01", "?from=2026-13-01&to=2026-12-31",
                  "?from=2026-02-01&to=2026-01-01", "?from=2020-01-01&to=2026-01-01"):
        status, body, _ = await _get(node, "/api/export/consultations" + query, admin)
        assert status == 422 and body["error"]["code"] == "bad_query", query
    booking = await node.book()
    status, _, _ = await _get(node, "/api/export/consultations?from=2026-01-01&to=2026-01-02",
                              booking.guardian_link.split("#token=")[1])
    assert status == 403
    status, _, _ = await _get(node, "/api/export/consultations?from=2026-01-01&to=2026-01-02",
                              node.token(Role.AUDITOR, "x"))
    assert status == 403


async def test_export_ranges_at_the_ends_of_the_calendar_are_refused(node: Node) -> None:
    """Year 1 and year 9999 overflowed in the day arithmetic (a 500); a clean 422 now."""
    admin = node.token(Role.ADMIN, "a")
    for first, last in (("0001-01-01", "0001-01-02"), ("9999-12-30", "9999-12-31"),
                        ("1899-12-31", "1900-01-01"), ("2199-12-31", "2200-01-01")):
        status, body, _ = await _get(
            node, f"/api/export/consultations?from={first}&to={last}", admin)
        assert status == 422, (first, last, body)
        assert body["error"]["code"] == "bad_query" and body["error"]["field"] in ("from", "to")
    for first, last in (("1900-01-01", "1900-01-02"), ("2199-12-30", "2199-12-31")):
        status, text, _ = await _get(
            node, f"/api/export/consultations?from={first}&to={last}", admin)
        assert (status, text) == (200, ""), (first, last)
    exports = [e for e in await node.ctx.events.events(SYSTEM_CHAIN)
               if e.kind == "export.consultations"]
    assert len(exports) == 2  # only the ones made


BAD_TERMINATIONS = [
    ({"reason": "condition_changed"}, "referral"),
    ({"referral": REFERRAL}, "reason"),
    ({"reason": "bored", "referral": REFERRAL}, "reason"),
    ({"reason": "other", "referral": REFERRAL}, "text"),
    ({"reason": "other", "text": "  ", "referral": REFERRAL}, "text"),
    ({"reason": "needs_in_person", "referral": {**REFERRAL, "hospital": ""}},
     "referral.hospital"),
    ({"reason": "needs_in_person", "referral": {k: v for k, v in REFERRAL.items()
                                                if k != "department"}}, "referral.department"),
    ({"reason": "needs_in_person", "referral": {**REFERRAL, "urgency": "soon"}},
     "referral.urgency"),
    ({"reason": "needs_in_person", "referral": "北京儿童医院"}, "referral"),
]


async def test_bad_terminations_change_nothing(node: Node, clips) -> None:
    booking, guardian, doctor = await active_call(node, clips)
    cid = booking.consultation_id
    try:
        for fields, field in BAD_TERMINATIONS:
            await doctor.send({"type": "terminate", **fields})
            error = await doctor.expect("error")
            assert (error["code"], error.get("field")) == ("bad_field", field), (fields, error)
            assert await node.ctx.lifecycle.state(cid) == State.ACTIVE
        # The guardian may not terminate.
        await guardian.send({"type": "terminate", "reason": "other", "text": "x",
                             "referral": REFERRAL, "id": "g"})
        error = await guardian.expect("error")
        assert error["code"] == "forbidden" and error["re"] == "g"
        assert await node.ctx.lifecycle.state(cid) == State.ACTIVE
        assert await _referrals(node) == 0
        # Media still flows after all that.
        before = doctor.received["video"].frames
        await doctor.wait_frames("video", before + 10)

        # A valid termination, then a second one: refused, nothing changes.
        await doctor.send({"type": "terminate", "reason": "other", "text": "家长要求线下就诊",
                           "referral": {**REFERRAL, "urgency": "routine"}})
        await guardian.expect("state", state="terminated")
    finally:
        await guardian.close()
        await doctor.close()
    with pytest.raises(TransitionError, match="terminated"):
        await terminate(node.ctx, cid, "system", "doctor_identity_lost",
                        ReferralTarget("北京儿童医院", "儿科", "urgent"))
    assert await _referrals(node) == 1
    assert await node.states(cid) == ["waiting", "verifying", "active", "terminated"]
    _, body, _ = await _get(node, f"/api/consultations/{cid}/referral",
                            booking.guardian_link.split("#token=")[1])
    assert body["reason"] == "other" and body["text"] == "家长要求线下就诊"
    # A terminated consultation cannot be joined again.
    ws_url = node.url.replace("http", "ws") + "/ws"
    async with node.session.ws_connect(
            ws_url, params={"token": booking.doctor_link.split("#token=")[1]}) as ws:
        await ws.send_json({"type": "join", "protocol": 1})
        reply = await ws.receive_json(timeout=5)
        assert reply["code"] == "bad_state" and "terminated" in reply["message"]


async def test_automatic_trigger_uses_the_same_flow(node: Node, clips) -> None:
    """A system trigger (guardian absent too long) terminates before the doctor accepted."""
    booking = await node.book()
    cid = booking.consultation_id
    guardian = node.client(booking.guardian_link.split("#token=")[1], clips)
    doctor = node.client(booking.doctor_link.split("#token=")[1], clips)
    try:
        for side in (guardian, doctor):
            await side.connect()
        await terminate(node.ctx, cid, "system", "guardian_absent",
                        ReferralTarget("北京儿童医院", "儿童保健科", "routine",
                                       "请预约线下门诊复查。"))
        for side in (guardian, doctor):
            await side.expect("state", state="terminated")
            await side.expect("closed")
    finally:
        await guardian.close()
        await doctor.close()
    assert await node.states(cid) == ["waiting", "verifying", "terminated"]
    with pytest.raises(ValueError, match="urgency"):
        await terminate(node.ctx, (await node.book()).consultation_id, "system",
                        "guardian_absent", ReferralTarget("h", "d", "whenever"))


async def test_consent_rules(node: Node, clips) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    g_token = booking.guardian_link.split("#token=")[1]
    status, body, _ = await _get(node, "/api/consent", g_token)
    assert status == 200 and body["given"] is False
    assert body["text"]["version"] == CURRENT_VERSION
    assert any("录" in s["zh"] for s in body["text"]["sections"])  # recording is stated
    guardian = node.client(g_token, clips)
    doctor = node.client(booking.doctor_link.split("#token=")[1], clips)
    try:
        joined = await guardian.connect()
        assert joined["consent"] == {"given": False, "version": CURRENT_VERSION, "at": None}
        await doctor.connect()
        await doctor.send({"type": "accept", "id": 1})
        error = await doctor.expect("error")
        assert error["code"] == "bad_state" and "consent" in error["message"]
        await doctor.send({"type": "consent", "version": CURRENT_VERSION})
        assert (await doctor.expect("error"))["code"] == "forbidden"
        await guardian.send({"type": "consent", "version": "1999.1"})
        error = await guardian.expect("error")
        assert (error["code"], error["field"]) == ("bad_field", "version")
        await guardian.send({"type": "consent"})
        assert (await guardian.expect("error"))["field"] == "version"
        await give_consent(guardian, doctor)
        await give_consent(guardian, doctor)  # again (a reload): still one consent
        status, body, _ = await _get(node, "/api/consent",
                                     booking.doctor_link.split("#token=")[1])
        assert body["given"] is True
    finally:
        await guardian.close()
        await doctor.close()
    kinds = [e["kind"] for e in await node.events(cid)]
    assert kinds.count("consent.shown") == 1 and kinds.count("consent.accepted") == 1
    assert kinds.index("consent.shown") < kinds.index("consent.accepted")
