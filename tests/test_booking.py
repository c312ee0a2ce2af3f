"""Booking over HTTP: records, validation, the policy at booking and again at start."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core.auth import Role
from core.lifecycle import State, TransitionError
from core.policy import load_policy
from core.store import SYSTEM_CHAIN, Consultation, Doctor, records
from server.demo import pilot_hospitals

from .node_fixtures import Node

SPECIALTY = "儿童营养"


# The booking tests' "today": inside the pilot, before its last day. The node's clock is fixed so
# that these dates stay in the future whatever the calendar says.
TODAY = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


async def _setup(node: Node) -> dict[str, str]:
    """A pilot hospital with an eligible doctor, a patient and guardian (through the API)."""
    node.ctx.clock.fixed = TODAY
    hospitals = await pilot_hospitals(node.ctx.db, load_policy())
    hospital = hospitals[1]
    doctor = await records.create_doctor(
        node.ctx.db, hospital_id=hospital.id, name="赵医生", national_id_masked="110***1",
        licence_no="110110000099999", title="associate_chief",
        clinical_practice_since=date(2010, 1, 1), online_practice_since=date(2022, 1, 1),
        training_passed_on=date(2025, 12, 1), specialties=[SPECIALTY])
    patient = await _post(node, "/api/patients", {"name": "王小红", "birth_date": "2020-08-08"})
    guardian = await _post(node, "/api/guardians", {"patient_id": patient["id"],
                                                     "name": "王强", "relation": "father"})
    return {"hospital_id": hospital.id, "doctor_id": doctor.id, "patient_id": patient["id"],
            "guardian_id": guardian["id"]}


def _admin(node: Node) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token(Role.ADMIN, 'scheduler-1')}"}


async def _post(node: Node, path: str, body: Any, status: int = 201,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with node.session.post(node.url + path, json=body,
                                 headers=headers or _admin(node)) as resp:
        data = await resp.json()
        assert resp.status == status, (resp.status, data)
        return data


def _booking(ids: dict[str, str], **changes: Any) -> dict[str, Any]:
    body = {**ids, "specialty": SPECIALTY, "visit_type": "first",
            "scheduled_at": "2026-12-31T23:30:00+08:00"}
    body.update(changes)
    return body


async def _count(node: Node) -> int:
    async with node.ctx.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(Consultation)) or 0)


async def test_book_a_first_visit_on_the_last_pilot_day(node: Node) -> None:
    ids = await _setup(node)
    data = await _post(node, "/api/consultations", _booking(ids))
    c = data["consultation"]
    assert c["state"] == "scheduled" and c["visit_type"] == "first"
    assert data["eligibility"]["allowed"] is True
    assert data["links"]["doctor"].split("#token=")[0].endswith("/call")
    assert "#token=" in data["links"]["guardian"]
    kinds = [e["kind"] for e in await node.events(c["id"])]
    assert kinds == ["consultation.booked", "eligibility.decision"]
    decision = (await node.events(c["id"]))[1]["data"]
    assert decision["stage"] == "booking" and len(decision["rules"]) == 10
    # The guardian's link works for the call page's own view.
    token = data["links"]["guardian"].split("#token=")[1]
    async with node.session.get(node.url + "/api/me",
                                headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200


@pytest.mark.parametrize(("changes", "rule"), [
    ({"scheduled_at": "2027-01-01T00:00:00+08:00"}, "pilot_window"),
    # 16:00 UTC on 31 Dec 2026 is 1 Jan 2027 in Beijing.
    ({"scheduled_at": "2026-12-31T16:00:00Z"}, "pilot_window"),
    ({"specialty": "儿童呼吸"}, "pilot_specialty"),
    ({"visit_type": "follow_up"}, "prior_diagnosis"),
])
async def test_refusals_name_the_rule_and_create_nothing(node: Node, changes: dict,
                                                         rule: str) -> None:
    ids = await _setup(node)
    before = await _count(node)
    data = await _post(node, "/api/consultations", _booking(ids, **changes), status=422)
    assert data["error"]["code"] == "ineligible"
    assert data["error"]["rule"] == rule
    assert data["error"]["zh"] and data["error"]["message"]
    assert rule in data["error"]["decision"]["failed"]
    assert await _count(node) == before
    refusals = [e for e in await node.ctx.events.events(SYSTEM_CHAIN)
                if e.kind == "eligibility.decision"]
    assert refusals and refusals[-1].data["failed"][0] == rule


async def test_non_pilot_hospital_refused(node: Node) -> None:
    ids = await _setup(node)
    other = await records.create_hospital(node.ctx.db, name="天津某医院", city="天津")
    doctor = await records.create_doctor(
        node.ctx.db, hospital_id=other.id, name="钱医生", national_id_masked="x",
        licence_no="120000", title="chief", clinical_practice_since=date(2000, 1, 1),
        online_practice_since=date(2020, 1, 1), training_passed_on=date(2025, 1, 1))
    data = await _post(node, "/api/consultations",
                       _booking(ids, hospital_id=other.id, doctor_id=doctor.id), status=422)
    assert data["error"]["rule"] == "pilot_hospital"


async def test_follow_up_with_prior_diagnosis(node: Node) -> None:
    ids = await _setup(node)
    prior = await _post(node, "/api/prior-diagnoses", {
        "patient_id": ids["patient_id"], "institution": "首都医科大学附属首都儿童医学中心",
        "institution_hospital_id": ids["hospital_id"], "diagnosis": "营养不良",
        "diagnosed_on": "2026-05-01", "document_ref": "EMR-2026-0501-17"})
    assert prior["institution_is_physical"] is True
    data = await _post(node, "/api/consultations", _booking(
        ids, visit_type="follow_up", prior_diagnosis_id=prior["id"],
        scheduled_at="2027-01-05T10:00:00+08:00"))
    assert data["consultation"]["prior_diagnosis_id"] == prior["id"]
    # Not from a physical hospital: refused.
    online = await _post(node, "/api/prior-diagnoses", {
        "patient_id": ids["patient_id"], "institution": "某互联网医院",
        "institution_is_physical": False, "diagnosis": "x", "diagnosed_on": "2026-05-01",
        "document_ref": "y"})
    refused = await _post(node, "/api/consultations", _booking(
        ids, visit_type="follow_up", prior_diagnosis_id=online["id"]), status=422)
    assert refused["error"]["rule"] == "prior_diagnosis"


@pytest.mark.parametrize("field", ["hospital_id", "doctor_id", "patient_id", "guardian_id",
                                   "prior_diagnosis_id"])
async def test_unknown_ids_are_clear_errors(node: Node, field: str) -> None:
    ids = await _setup(node)
    before = await _count(node)
    data = await _post(node, "/api/consultations", _booking(ids, **{field: "x_nope"}),
                       status=422)
    assert data["error"] == {"code": "unknown_id", "message": data["error"]["message"],
                             "field": field}
    assert "x_nope" in data["error"]["message"]
    assert await _count(node) == before


async def test_guardian_of_another_patient_refused(node: Node) -> None:
    ids = await _setup(node)
    other = await _post(node, "/api/patients", {"name": "别人", "birth_date": "2019-01-01"})
    g = await _post(node, "/api/guardians", {"patient_id": other["id"], "name": "别人家长",
                                             "relation": "mother"})
    data = await _post(node, "/api/consultations", _booking(ids, guardian_id=g["id"]),
                       status=422)
    assert data["error"]["field"] == "guardian_id"


@pytest.mark.parametrize(("changes", "field"), [
    ({"visit_type": "second"}, "visit_type"),
    ({"specialty": ""}, "specialty"),
    ({"doctor_id": None}, "doctor_id"),
    ({"doctor_id": 5}, "doctor_id"),
    ({"scheduled_at": "2026-12-31T10:00:00"}, "scheduled_at"),
    ({"scheduled_at": "tomorrow"}, "scheduled_at"),
    ({"scheduled_at": "2020-01-01T10:00:00+08:00"}, "scheduled_at"),
])
async def test_field_validation(node: Node, changes: dict, field: str) -> None:
    ids = await _setup(node)
    data = await _post(node, "/api/consultations", _booking(ids, **changes), status=422)
    assert data["error"]["code"] == "bad_field" and data["error"]["field"] == field


async def test_bad_bodies_and_roles(node: Node) -> None:
    async with node.session.post(node.url + "/api/consultations", data=b"{not json",
                                 headers=_admin(node)) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_json"
    await _post(node, "/api/consultations", [1, 2], status=400)
    booking = await node.book()
    guardian = {"Authorization": "Bearer " + node.token(Role.GUARDIAN, booking.guardian_id,
                                                        booking.consultation_id)}
    data = await _post(node, "/api/consultations", {}, status=403, headers=guardian)
    assert data["error"]["code"] == "wrong_role"
    async with node.session.post(node.url + "/api/consultations", json={}) as resp:
        assert resp.status == 401
    await _post(node, "/api/patients", {"name": "x", "birth_date": "2099-01-01"}, status=422)
    await _post(node, "/api/guardians", {"patient_id": "p_nope", "name": "x",
                                         "relation": "y"}, status=422)


async def test_eligibility_checked_again_when_the_consultation_starts(node: Node) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    # After booking, the doctor is taken off the whitelist.
    async with node.ctx.db.session() as s, s.begin():
        doctor = await s.get(Doctor, booking.doctor_id)
        assert doctor is not None
        doctor.whitelist_status = "suspended"
    await node.ctx.lifecycle.transition(cid, State.VERIFYING, "doctor:d")
    with pytest.raises(TransitionError, match="eligibility: doctor_whitelisted"):
        await node.ctx.lifecycle.accept(cid, f"doctor:{booking.doctor_id}")
    assert await node.ctx.lifecycle.state(cid) == State.VERIFYING
    decisions = [e["data"] for e in await node.events(cid) if e["kind"] == "eligibility.decision"]
    assert [d["stage"] for d in decisions] == ["booking", "start"]
    assert decisions[-1]["failed"] == ["doctor_whitelisted"]


async def test_pilot_hospitals_seed_once(node: Node) -> None:
    first = await pilot_hospitals(node.ctx.db, load_policy())
    again = await pilot_hospitals(node.ctx.db, load_policy())
    assert [h.id for h in first] == [h.id for h in again] == ["h_bj_bch", "h_bj_cih"]
    with pytest.raises(IntegrityError):
        await records.create_hospital(node.ctx.db, id="h_bj_bch", name="dup", city="北京")
