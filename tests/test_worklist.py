"""The doctor's day: the day token, the worklist (JSON and server-sent events), joining from it,
what the day token cannot open, and the guardian's place in the queue."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime, timedelta
from typing import Any

import aiohttp
import jwt
import pytest
from sqlalchemy import update

from core.auth import BOUND_ROLES, Role, Tokens
from core.config import load_settings
from core.consent import CURRENT_VERSION, record_consent
from core.lifecycle import State
from core.policy.dates import SHANGHAI
from core.store import SYSTEM_CHAIN, Consultation, Database, Doctor, EventLog, records
from server.__main__ import main
from server.worklist import DEFAULT_VISIT_S, age, average_visit_s, masked_name

from .node_fixtures import SECRET, Node
from .worklist_fixtures import book_at, guardian_token, make_doctor, today_at


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _call(node: Node, method: str, path: str, token: str | None, status: int,
                body: Any = None) -> dict[str, Any]:
    async with node.session.request(method, node.url + path, headers=_auth(token),
                                    json=body) as r:
        data = await r.json()
        assert r.status == status, (method, path, r.status, data)
        return data


def _day_token(node: Node, doctor_id: str, ttl: int | None = None) -> str:
    return node.token(Role.DOCTOR_DAY, doctor_id, ttl=ttl)


# -- least data ------------------------------------------------------------------------------

def test_patient_names_are_masked() -> None:
    assert masked_name("李小明") == "李*明"
    assert masked_name("王五") == "王*"
    assert masked_name("欧阳娜娜") == "欧**娜"
    assert masked_name("Wang Xiao Ming") == "Wang X. M."
    assert masked_name("Li") == "L."
    assert masked_name("  ") == "—"


def test_ages_in_years_and_for_babies_months() -> None:
    assert age(date(2020, 12, 3), date(2026, 12, 2)) == {"years": 5}
    assert age(date(2020, 12, 2), date(2026, 12, 2)) == {"years": 6}
    assert age(date(2026, 3, 15), date(2026, 12, 2)) == {"years": 0, "months": 8}


def test_the_average_visit_ignores_implausible_lengths() -> None:
    assert average_visit_s([]) == DEFAULT_VISIT_S
    assert average_visit_s([10, 20 * 60, 10 * 60, 5 * 3600]) == 15 * 60


# -- the day token --------------------------------------------------------------------------------

async def test_admin_issues_a_day_token(node: Node) -> None:
    doctor = await make_doctor(node)
    admin = node.token(Role.ADMIN, "scheduler")
    data = await _call(node, "POST", f"/api/admin/doctors/{doctor.id}/day-token", admin, 201,
                       {"hours": 10})
    claims = jwt.decode(data["token"], SECRET, algorithms=["HS256"])
    assert claims["role"] == "doctor_day" and claims["sub"] == doctor.id and "cid" not in claims
    assert 10 * 3600 - 5 <= claims["exp"] - claims["iat"] <= 10 * 3600
    assert data["link"].endswith(f"/worklist#token={data['token']}")
    logged = [e for e in await node.ctx.events.events(SYSTEM_CHAIN)
              if e.kind == "worklist.day_token"]
    assert [(e.actor, e.data["doctor"], e.data["hours"]) for e in logged] == [
        ("admin:scheduler", doctor.id, 10)]
    assert data["token"] not in json.dumps([e.data for e in logged])
    # Defaults, bounds, unknown and suspended doctors.
    await _call(node, "POST", f"/api/admin/doctors/{doctor.id}/day-token", admin, 201, {})
    for hours in (0, 17, "x"):
        err = await _call(node, "POST", f"/api/admin/doctors/{doctor.id}/day-token", admin,
                          422, {"hours": hours})
        assert err["error"]["field"] == "hours"
    await _call(node, "POST", "/api/admin/doctors/d_nobody/day-token", admin, 404, {})
    async with node.ctx.db.session() as s, s.begin():
        await s.execute(update(Doctor).where(Doctor.id == doctor.id)
                        .values(whitelist_status="suspended"))
    err = await _call(node, "POST", f"/api/admin/doctors/{doctor.id}/day-token", admin, 409, {})
    assert err["error"]["code"] == "doctor_not_active"


def test_a_day_token_names_no_consultation(node: Node) -> None:
    with pytest.raises(ValueError):
        node.tokens.issue(Role.DOCTOR_DAY, "d_1", "c_1")
    forged = jwt.encode({"iss": "teleconsult", "sub": "d_1", "role": "doctor_day", "cid": "c_1",
                         "exp": int(datetime.now().timestamp()) + 60}, SECRET, algorithm="HS256")
    with pytest.raises(Exception, match="names no consultation"):
        node.tokens.verify(forged)


# -- the worklist -------------------------------------------------------------------------------

async def test_the_worklist_is_todays_own_consultations_with_least_data(node: Node) -> None:
    doctor = await make_doctor(node)
    other = await make_doctor(node, "钱医生")
    first = today_at(40)
    a = await book_at(node, doctor, first, "李小明")
    b = await book_at(node, doctor, first + timedelta(minutes=20), "Wang Xiao", date(1990, 1, 1),
                      "follow_up")
    await book_at(node, doctor, first + timedelta(days=1), "明天见")  # tomorrow
    await book_at(node, other, first, "别人的")  # another doctor's
    await record_consent(node.ctx.db, node.ctx.events, a.cid, "guardian:x", CURRENT_VERSION)

    token = _day_token(node, doctor.id)
    async with node.session.get(node.url + "/api/worklist", headers=_auth(token)) as r:
        assert r.status == 200
        raw = await r.text()
    data = json.loads(raw)
    assert data["doctor"]["name"] == "张医生"
    assert data["date"] == datetime.now(SHANGHAI).date().isoformat()
    rows = data["consultations"]
    assert [c["consultation_id"] for c in rows] == [a.cid, b.cid]
    today = datetime.now(SHANGHAI).date()
    assert rows[0]["patient"] == {"name": "李*明", "age": age(date(2021, 5, 4), today)}
    assert rows[1]["patient"]["name"] == "Wang X."
    assert rows[0]["pediatric"] is True and rows[1]["pediatric"] is False
    assert rows[0]["visit_type"] == "first" and rows[1]["visit_type"] == "follow_up"
    assert rows[0]["time"] == first.strftime("%H:%M")
    assert [c["consent"] for c in rows] == [True, False]
    assert [c["guardian"] for c in rows] == ["not_joined", "not_joined"]
    for name in ("李小明", "Wang Xiao", "明天见", "别人的"):  # least data: no full name
        assert name not in raw
    assert [e.data for e in await node.ctx.events.events(SYSTEM_CHAIN)
            if e.kind == "worklist.read"] == [{"how": "once"}]


async def _next_snapshot(response: aiohttp.ClientResponse, timeout: float = 5) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            line = (await response.content.readline()).decode()
            if line.startswith("data: "):
                return json.loads(line[6:])


async def test_the_stream_shows_a_guardian_waiting(node: Node) -> None:
    doctor = await make_doctor(node)
    slot = await book_at(node, doctor, today_at(10))
    token = _day_token(node, doctor.id)
    async with node.session.get(f"{node.url}/api/worklist/stream?token={token}") as stream:
        assert stream.status == 200
        assert stream.content_type == "text/event-stream"
        first = await _next_snapshot(stream)
        assert first["consultations"][0]["guardian"] == "not_joined"
        guardian = node.client(guardian_token(node, slot))
        await guardian.connect()
        try:
            async with asyncio.timeout(10):
                while True:
                    row = (await _next_snapshot(stream))["consultations"][0]
                    if row["guardian"] == "waiting":
                        break
            assert row["state"] == "waiting" and row["doctor_joined"] is False
        finally:
            await guardian.close()


async def test_the_worklist_shows_the_guardian_on_camera(node: Node) -> None:
    """The live flag the presence monitor publishes (identity/guardian/presence.py: put_consultation
    {"guardian": present|absent}) is the worklist's "guardian on camera", per consultation."""
    doctor = await make_doctor(node)
    slot = await book_at(node, doctor, today_at(10))
    other = await book_at(node, doctor, today_at(5), "王五")
    day = _day_token(node, doctor.id)

    def on_camera(data: dict[str, Any]) -> dict[str, Any]:
        return {c["consultation_id"]: c["on_camera"] for c in data["consultations"]}

    assert on_camera(await _call(node, "GET", "/api/worklist", day, 200)) == {
        slot.cid: None, other.cid: None}  # not checked yet: no flag, shown as "—"
    guardian = node.client(guardian_token(node, slot))
    await guardian.connect()
    try:
        for seen in ("present", "absent", "present"):
            await node.ctx.live.put_consultation(slot.cid, {"guardian": seen})
            data = await _call(node, "GET", "/api/worklist", day, 200)
            assert on_camera(data) == {slot.cid: seen, other.cid: None}
            row = next(c for c in data["consultations"] if c["consultation_id"] == slot.cid)
            assert row["guardian"] == "waiting"  # connected, the doctor not there yet
        # Over the stream as well.
        async with node.session.get(f"{node.url}/api/worklist/stream?token={day}") as stream:
            assert on_camera(await _next_snapshot(stream))[slot.cid] == "present"
    finally:
        await guardian.close()


async def _until_closed(response: aiohttp.ClientResponse, timeout: float) -> list[dict]:
    snapshots = []
    async with asyncio.timeout(timeout):
        async for line in response.content:
            if line.startswith(b"data: "):
                snapshots.append(json.loads(line[6:]))
    return snapshots


async def test_the_stream_ends_with_the_day_token_or_the_doctors_rights(node: Node) -> None:
    doctor = await make_doctor(node)
    await book_at(node, doctor, today_at(10))
    short = _day_token(node, doctor.id, ttl=2)
    async with node.session.get(f"{node.url}/api/worklist/stream?token={short}") as stream:
        assert len(await _until_closed(stream, timeout=6)) >= 1
    token = _day_token(node, doctor.id)
    async with node.session.get(f"{node.url}/api/worklist/stream?token={token}") as stream:
        await _next_snapshot(stream)
        async with node.ctx.db.session() as s, s.begin():
            await s.execute(update(Doctor).where(Doctor.id == doctor.id)
                            .values(whitelist_status="suspended"))
        last = (await _until_closed(stream, timeout=5))[-1]
        assert last["doctor"]["active"] is False


# -- joining from the worklist ---------------------------------------------------------------

async def test_joining_mints_a_call_token_for_own_consultations_only(node: Node) -> None:
    doctor = await make_doctor(node)
    other = await make_doctor(node, "钱医生")
    mine = await book_at(node, doctor, today_at(5))
    theirs = await book_at(node, other, today_at(5))
    tomorrow = await book_at(node, doctor, today_at(5) + timedelta(days=1))
    over = await book_at(node, doctor, today_at(5))
    await node.ctx.lifecycle.transition(over.cid, State.ABORTED, "ops:x", "test")
    day = _day_token(node, doctor.id, ttl=600)

    data = await _call(node, "POST", f"/api/worklist/{mine.cid}/join", day, 200)
    token = data["link"].removeprefix("/call#token=")
    claims = node.tokens.verify(token)
    assert (claims.role, claims.subject, claims.consultation_id) == (
        Role.DOCTOR, doctor.id, mine.cid)
    assert claims.expires_at <= node.tokens.verify(day).expires_at  # never outlives the day
    assert [e.kind for e in await node.ctx.events.events(mine.cid)][-1] == "worklist.join"
    # The minted token opens the call: the doctor joins over the WebSocket.
    doctor_client = node.client(token)
    await doctor_client.connect()
    await doctor_client.close()

    err = await _call(node, "POST", f"/api/worklist/{theirs.cid}/join", day, 403)
    assert err["error"]["code"] == "not_your_consultation"
    refused = [e for e in await node.ctx.events.events(theirs.cid)
               if e.kind == "worklist.join.refused"]
    assert [(e.actor, e.data["code"]) for e in refused] == [
        (f"doctor_day:{doctor.id}", "not_your_consultation")]
    err = await _call(node, "POST", f"/api/worklist/{tomorrow.cid}/join", day, 409)
    assert err["error"]["code"] == "not_today"
    err = await _call(node, "POST", f"/api/worklist/{over.cid}/join", day, 409)
    assert err["error"]["code"] == "bad_state"
    await _call(node, "POST", "/api/worklist/c_nothing/join", day, 404)
    # Suspended after the token was issued: no more calls from it.
    async with node.ctx.db.session() as s, s.begin():
        await s.execute(update(Doctor).where(Doctor.id == doctor.id)
                        .values(whitelist_status="suspended"))
    err = await _call(node, "POST", f"/api/worklist/{mine.cid}/join", day, 403)
    assert err["error"]["code"] == "doctor_not_active"


async def test_a_day_token_opens_nothing_else(node: Node) -> None:
    doctor = await make_doctor(node)
    slot = await book_at(node, doctor, today_at(5))
    day = _day_token(node, doctor.id)
    for method, path in (("GET", "/api/me"), ("GET", "/api/consent"), ("GET", "/api/queue"),
                         ("GET", f"/api/consultations/{slot.cid}/events"),
                         ("GET", f"/api/consultations/{slot.cid}/referral"),
                         ("GET", "/api/ops/live"), ("GET", "/api/reports/progress?month=2026-11"),
                         ("POST", f"/api/admin/doctors/{doctor.id}/day-token")):
        err = await _call(node, method, path, day, 403, {} if method == "POST" else None)
        assert err["error"]["code"] == "wrong_role", path
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await node.session.ws_connect(f"{node.url}/ws?token={day}")
    assert refused.value.status == 403


# -- adverse events after the call, from the worklist ------------------------------------------

async def test_the_day_token_files_adverse_events_on_own_consultations_only(node: Node) -> None:
    """The call page closed, the call token gone: the doctor reports from the worklist with the
    day token, on their own consultations (403 on another doctor's, which is an event too)."""
    doctor = await make_doctor(node)
    other = await make_doctor(node, "钱医生")
    mine = await book_at(node, doctor, today_at(60))
    theirs = await book_at(node, other, today_at(60))
    async with node.ctx.db.session() as s, s.begin():
        await s.execute(update(Consultation).where(Consultation.id.in_([mine.cid, theirs.cid]))
                        .values(state="ended", started_at=today_at(60), ended_at=today_at(40)))
    day = _day_token(node, doctor.id)
    mine_path = f"/api/consultations/{mine.cid}/adverse-events"
    # The worklist says which consultations are over (where the page offers the button).
    rows = (await _call(node, "GET", "/api/worklist", day, 200))["consultations"]
    assert [(r["consultation_id"], r["state"], r["joinable"]) for r in rows] == [
        (mine.cid, "ended", False)]

    description = "问诊结束后家长来电：患儿服药后出现皮疹"
    filed = await _call(node, "POST", mine_path, day, 201,
                        {"severity": "moderate", "description": description})
    assert filed["ref"].startswith("AE-") and filed["filed_by"] == "doctor"
    assert "consultation_id" not in filed  # the doctor's view, not staff's
    listed = await _call(node, "GET", mine_path, day, 200)
    assert [(i["ref"], i["description"]) for i in listed["items"]] == [(filed["ref"],
                                                                       description)]
    [event] = [e for e in await node.ctx.events.events(mine.cid)
               if e.kind == "adverse_event.filed"]
    assert event.actor == f"doctor_day:{doctor.id}"  # the credential used, named
    assert (event.data["by"], event.data["severity"]) == ("doctor", "moderate")

    theirs_path = f"/api/consultations/{theirs.cid}/adverse-events"
    for method, body in (("POST", {"severity": "mild", "description": "不是我的"}),
                         ("GET", None)):
        err = await _call(node, method, theirs_path, day, 403, body)
        assert err["error"]["code"] == "not_your_consultation"
    assert [(e.kind, e.actor, e.data) for e in await node.ctx.events.events(theirs.cid)
            if e.kind.startswith("adverse_event.")] == [
        ("adverse_event.refused", f"doctor_day:{doctor.id}", {"code": "not_your_consultation"}),
        ("adverse_event.refused", f"doctor_day:{doctor.id}", {"code": "not_your_consultation"})]
    await _call(node, "POST", "/api/consultations/c_nothing/adverse-events", day, 404,
                {"severity": "mild", "description": "x"})
    # Still nothing of the handling (staff's), nor the guardian's questions and complaints.
    for method, path in (("GET", "/api/quality/adverse-events"),
                         ("POST", f"/api/quality/adverse-events/{filed['ref']}/actions"),
                         ("POST", f"/api/quality/adverse-events/{filed['ref']}/close"),
                         ("GET", f"/api/consultations/{mine.cid}/feedback"),
                         ("POST", f"/api/consultations/{mine.cid}/feedback")):
        err = await _call(node, method, path, day, 403, {} if method == "POST" else None)
        assert err["error"]["code"] == "wrong_role", path
    # Markup is refused here as on the call page.
    err = await _call(node, "POST", mine_path, day, 422,
                      {"severity": "mild", "description": "<script>x</script>"})
    assert (err["error"]["code"], err["error"]["field"]) == ("markup_not_allowed", "description")


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/worklist"), ("GET", "/api/worklist/stream"),
    ("POST", "/api/worklist/c_x/join"), ("POST", "/api/admin/doctors/d_x/day-token"),
    ("GET", "/api/queue")])
async def test_roles_of_the_new_routes(node: Node, method: str, path: str) -> None:
    allowed = {"/api/queue": {Role.GUARDIAN},
               "/api/admin/doctors/d_x/day-token": {Role.ADMIN}}.get(path, {Role.DOCTOR_DAY})
    body = {} if method == "POST" else None
    for role in Role:
        token = node.token(role, "x-1", "c_x" if role in BOUND_ROLES else None)
        async with node.session.request(method, node.url + path, headers=_auth(token),
                                        json=body) as r:
            if role in allowed:
                assert r.status not in (401, 403), (role, r.status)
            else:
                assert r.status == 403 and (await r.json())["error"]["code"] == "wrong_role", role
    await _call(node, method, path, None, 401, body)
    await _call(node, method, path, "not.a.token", 401, body)


async def test_the_pages_are_public_shells(node: Node) -> None:
    async with node.session.get(node.url + "/worklist") as r:
        assert r.status == 200 and "/static/worklist.js" in await r.text()


# -- the guardian's place in the queue ---------------------------------------------------------

async def _here(node: Node, cid: str) -> None:
    """The guardian's page is connected, as the live state says (what ops sees)."""
    await node.ctx.live.put_consultation(cid, {"state": "waiting"})
    await node.ctx.live.put_participant(cid, "guardian", {"role": "guardian",
                                                          "status": "connected"})


async def test_the_guardian_sees_their_place_in_the_queue(node: Node) -> None:
    doctor = await make_doctor(node)
    day = datetime.now(SHANGHAI).date()
    at = lambda h, m: datetime(day.year, day.month, day.day, h, m, tzinfo=SHANGHAI)  # noqa: E731
    node.ctx.clock.fixed = at(10, 0)
    early = await book_at(node, doctor, at(9, 0))
    absent = await book_at(node, doctor, at(9, 15))  # the guardian has not come: not ahead
    mine = await book_at(node, doctor, at(9, 30))
    later = await book_at(node, doctor, at(9, 45))
    for slot in (early, mine, later):
        await _here(node, slot.cid)
    token = guardian_token(node, mine)

    q = await _call(node, "GET", "/api/queue", token, 200)
    assert (q["position"], q["ahead"], q["wait_min"]) == (2, 1, 15)
    # The doctor is with the first family, six minutes in: nine more minutes.
    async with node.ctx.db.session() as s, s.begin():
        await s.execute(update(Consultation).where(Consultation.id == early.cid).values(
            state="active", started_at=at(9, 54)))
    q = await _call(node, "GET", "/api/queue", token, 200)
    assert (q["position"], q["wait_min"]) == (2, 9)
    # A slot later in the day than the queue is long: wait for the slot.
    q = await _call(node, "GET", "/api/queue", guardian_token(node, absent), 200)
    assert q["position"] == 2
    node.ctx.clock.fixed = at(8, 0)
    q = await _call(node, "GET", "/api/queue", token, 200)
    assert q["wait_min"] == 90
    # The doctor's own average, once there is one: 20-minute visits.
    node.ctx.clock.fixed = at(10, 0)
    done = await book_at(node, doctor, at(8, 0))
    async with node.ctx.db.session() as s, s.begin():
        await s.execute(update(Consultation).where(Consultation.id == done.cid).values(
            state="ended", started_at=at(8, 0), ended_at=at(8, 20)))
    q = await _call(node, "GET", "/api/queue", token, 200)
    assert (q["visit_min"], q["wait_min"]) == (20, 14)
    # With the doctor: no queue.
    async with node.ctx.db.session() as s, s.begin():
        await s.execute(update(Consultation).where(Consultation.id == mine.cid).values(
            state="verifying"))
    q = await _call(node, "GET", "/api/queue", token, 200)
    assert (q["position"], q["wait_min"]) == (0, 0)


def test_the_command_line_issues_a_day_link(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TC_TOKEN_SECRET", SECRET)
    settings = load_settings()

    async def registered_doctor() -> str:
        db = await Database.open(settings.database_url)
        try:
            hospital = await records.create_hospital(db, name="医院", city="北京")
            doctor = await records.create_doctor(
                db, hospital_id=hospital.id, name="张医生", national_id_masked="110***1",
                licence_no="1", title="attending", specialties=[])
            return doctor.id
        finally:
            await db.close()

    async def logged() -> list[tuple[str, dict]]:
        db = await Database.open(settings.database_url)
        try:
            return [(e.actor, e.data) for e in await EventLog(db).events(SYSTEM_CHAIN)
                    if e.kind == "worklist.day_token"]
        finally:
            await db.close()

    doctor_id = asyncio.run(registered_doctor())
    assert main(["day-link", doctor_id, "--hours", "8"]) == 0
    link = capsys.readouterr().out.strip().split(": ", 1)[1]
    assert link.startswith(f"{settings.public_url}/worklist#token=")
    claims = Tokens(SECRET, 3600).verify(link.split("#token=")[1])
    assert (claims.role, claims.subject, claims.consultation_id) == (
        Role.DOCTOR_DAY, doctor_id, None)
    assert main(["day-link", "d_nobody"]) == 1
    assert main(["day-link", doctor_id, "--hours", "24"]) == 1
    assert [(actor, data["hours"]) for actor, data in asyncio.run(logged())] == [
        ("system:cli", 8)]
