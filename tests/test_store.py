"""The durable store on SQLite and PostgreSQL: schema, records, state CAS, the audit chain."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, inspect, text, update
from sqlalchemy.exc import IntegrityError, StatementError

from server.store import (
    GENESIS_HASH,
    SYSTEM_CHAIN,
    Consultation,
    Database,
    Event,
    EventLog,
    event_hash,
    models,
)
from server.store.db import POOL_OVERFLOW, POOL_SIZE
from server.store.models import utcnow
from server.store.records import (
    create_consultation,
    create_doctor,
    create_guardian,
    create_hospital,
    create_patient,
    get_consultation,
    get_doctor,
    get_guardian,
    get_hospital,
    get_patient,
    list_consultations,
    set_consultation_state,
)

BEIJING = timezone(timedelta(hours=8))


async def make_consultation(db: Database, **overrides: object) -> Consultation:
    hospital = await create_hospital(db, name="首都医科大学附属北京儿童医院", city="北京")
    doctor = await create_doctor(
        db, hospital_id=hospital.id, name="王医生", national_id_masked="110***********1234",
        licence_no="110000000001", title="attending", clinical_practice_since=date(2015, 7, 1),
        specialties=["儿童生长发育"])
    patient = await create_patient(db, name="小明", birth_date=date(2021, 3, 4))
    guardian = await create_guardian(db, patient_id=patient.id, name="明妈", relation="mother")
    values: dict = dict(hospital_id=hospital.id, doctor_id=doctor.id, patient_id=patient.id,
                        guardian_id=guardian.id, specialty="儿童生长发育", visit_type="first",
                        scheduled_at=datetime(2026, 3, 1, 9, 30, tzinfo=BEIJING))
    values.update(overrides)
    return await create_consultation(db, **values)


async def test_migrations_create_the_models_schema(database: Database) -> None:
    def diff(conn):  # type: ignore[no-untyped-def]
        tables = set(inspect(conn).get_table_names())
        return tables, compare_metadata(MigrationContext.configure(conn), models.Base.metadata)

    async with database.engine.connect() as conn:
        tables, diffs = await conn.run_sync(diff)
    assert {"hospitals", "doctors", "patients", "guardians", "consultations", "events",
            "alembic_version"} <= tables
    assert diffs == []
    assert await database.ping()


async def test_reopening_a_migrated_database_is_harmless(database_url: str) -> None:
    first = await Database.open(database_url)
    second = await Database.open(database_url)
    try:
        assert await first.ping() and await second.ping()
    finally:
        await first.close()
        await second.close()


async def test_records_roundtrip_with_aware_utc_datetimes(database: Database) -> None:
    c = await make_consultation(database)
    assert c.id.startswith("c_")

    got = await get_consultation(database, c.id)
    assert got is not None
    assert got.scheduled_at == datetime(2026, 3, 1, 1, 30, tzinfo=UTC)
    assert got.scheduled_at.utcoffset() == timedelta(0)
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == timedelta(0)
    assert (got.state, got.event_seq, got.event_head) == ("scheduled", 0, GENESIS_HASH)
    assert got.started_at is None and got.node_id is None

    doctor = await get_doctor(database, got.doctor_id)
    assert doctor is not None
    assert doctor.specialties == ["儿童生长发育"]
    assert doctor.clinical_practice_since == date(2015, 7, 1)
    assert doctor.whitelist_status == "active" and doctor.whitelist_changed_at is None
    hospital = await get_hospital(database, got.hospital_id)
    assert hospital is not None and hospital.is_physical is True and hospital.city == "北京"
    patient = await get_patient(database, got.patient_id)
    assert patient is not None and patient.birth_date == date(2021, 3, 4)
    guardian = await get_guardian(database, got.guardian_id or "")
    assert guardian is not None and guardian.patient_id == patient.id

    assert await get_consultation(database, "c_nope") is None
    with pytest.raises(StatementError, match="naive datetime"):
        await make_consultation(database, scheduled_at=datetime(2026, 3, 1, 9, 30))


async def test_constraints_are_enforced(database: Database) -> None:
    """Foreign keys (off by default on SQLite) and the closed vocabularies hold."""
    with pytest.raises(IntegrityError):
        await create_doctor(database, hospital_id="h_missing", name="x", national_id_masked="x",
                            licence_no="x", title="attending")
    hospital = await create_hospital(database, name="h", city="北京")
    with pytest.raises(IntegrityError):
        await create_doctor(database, hospital_id=hospital.id, name="x", national_id_masked="x",
                            licence_no="x", title="professor")


async def test_list_consultations_filters_by_state(database: Database) -> None:
    a = await make_consultation(database)
    b = await make_consultation(database)
    assert await set_consultation_state(database, b.id, "scheduled", "waiting")
    assert [c.id for c in await list_consultations(database, "waiting")] == [b.id]
    assert [c.id for c in await list_consultations(database, "scheduled")] == [a.id]
    assert len(await list_consultations(database)) == 2
    assert [c.id for c in await list_consultations(database, doctor_id=a.doctor_id)] == [a.id]


async def test_state_compare_and_set(database: Database) -> None:
    c = await make_consultation(database)
    started = datetime(2026, 3, 1, 9, 31, 5, 123456, tzinfo=BEIJING)
    assert await set_consultation_state(database, c.id, "scheduled", "active",
                                        started_at=started, node_id="node-a")
    # A second writer that still believes the consultation is scheduled loses.
    assert not await set_consultation_state(database, c.id, "scheduled", "aborted")
    assert not await set_consultation_state(database, "c_nope", "scheduled", "active")
    got = await get_consultation(database, c.id)
    assert got is not None
    assert (got.state, got.node_id, got.started_at) == ("active", "node-a", started)

    ended = datetime.now(UTC)
    assert await set_consultation_state(database, c.id, "active", "terminated", ended_at=ended,
                                        end_reason="condition changed: refer")
    got = await get_consultation(database, c.id)
    assert got is not None
    assert (got.state, got.ended_at, got.end_reason) == ("terminated", ended,
                                                         "condition changed: refer")
    with pytest.raises(TypeError, match="cannot set"):
        await set_consultation_state(database, c.id, "terminated", "ended", doctor_id="d_x")


async def test_racing_state_changes_have_one_winner(database: Database) -> None:
    c = await make_consultation(database)
    wins = await asyncio.gather(*(
        set_consultation_state(database, c.id, "scheduled", "waiting", node_id=f"node-{i}")
        for i in range(10)))
    assert wins.count(True) == 1


async def test_chain_append_and_verify(database: Database) -> None:
    c = await make_consultation(database)
    log = EventLog(database)
    first = await log.append(c.id, "consultation.booked", "patient:p1", {"visit": "first"})
    second = await log.append(c.id, "consent.recorded", "guardian:g1", {"text": "同意", "n": 1.5})
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert second.at.utcoffset() == timedelta(0) and second.at >= first.at

    stored = await log.events(c.id)
    assert [(e.seq, e.kind, e.data, e.hash) for e in stored] == [
        (1, "consultation.booked", {"visit": "first"}, first.hash),
        (2, "consent.recorded", {"text": "同意", "n": 1.5}, second.hash)]
    head = await get_consultation(database, c.id)
    assert head is not None and (head.event_seq, head.event_head) == (2, second.hash)

    report = await log.verify(c.id)
    assert (report.ok, report.count, report.problems) == (True, 2, [])

    await log.append(SYSTEM_CHAIN, "node.started", "node:a", {"version": "0.1"})
    assert (await log.verify(SYSTEM_CHAIN)).ok
    with pytest.raises(LookupError):
        await log.append("c_nope", "x", "y", {})


async def _chain_of(database: Database, n: int) -> tuple[EventLog, str]:
    c = await make_consultation(database)
    log = EventLog(database)
    for i in range(n):
        await log.append(c.id, "step", "system", {"i": i})
    return log, c.id


async def test_verify_detects_an_edited_event(database: Database) -> None:
    log, chain = await _chain_of(database, 4)
    async with database.session() as s, s.begin():
        await s.execute(update(Event).where(Event.chain == chain, Event.seq == 3)
                        .values(data={"i": 99}))
    report = await log.verify(chain)
    assert not report.ok and report.count == 4
    assert report.problems == ["event 3: hash does not match its content"]


async def test_verify_detects_an_edit_with_a_recomputed_hash(database: Database) -> None:
    log, chain = await _chain_of(database, 4)
    async with database.session() as s, s.begin():
        await s.execute(update(Event).where(Event.chain == chain, Event.seq == 2)
                        .values(hash="f" * 64))
    assert "event 3: does not link to the event before it (prev_hash mismatch)" in (
        await log.verify(chain)).problems


async def test_verify_detects_a_deleted_middle_event(database: Database) -> None:
    log, chain = await _chain_of(database, 5)
    async with database.session() as s, s.begin():
        await s.execute(delete(Event).where(Event.chain == chain, Event.seq == 3))
    report = await log.verify(chain)
    assert not report.ok and report.count == 4
    assert "event 3 is missing" in report.problems


async def test_verify_detects_a_deleted_last_event(database: Database) -> None:
    log, chain = await _chain_of(database, 5)
    async with database.session() as s, s.begin():
        await s.execute(delete(Event).where(Event.chain == chain, Event.seq >= 4))
    report = await log.verify(chain)
    assert not report.ok and report.count == 3
    assert report.problems == [
        "events 4–5 are missing at the end of the chain (the consultation records 5 events)"]

    # Appending afterwards does not paper over the hole.
    await log.append(chain, "step", "system", {"i": "after"})
    assert "events 4–5 are missing" in (await log.verify(chain)).problems


async def test_verify_detects_an_event_added_behind_the_logs_back(database: Database) -> None:
    """A forger who links and hashes a new last event correctly still cannot move the head."""
    log, chain = await _chain_of(database, 3)
    last = (await log.events(chain))[-1]
    at = utcnow()
    data = {"i": "forged"}
    async with database.session() as s, s.begin():
        s.add(Event(chain=chain, seq=4, at=at, kind="step", actor="system", data=data,
                    prev_hash=last.hash,
                    hash=event_hash(last.hash, chain, 4, at, "step", "system", data)))
    report = await log.verify(chain)
    assert not report.ok and report.count == 3
    assert report.problems == [
        "event 4: after the last event the consultation records (written outside the log)"]


async def test_concurrent_appends_make_a_gapless_chain(database: Database) -> None:
    c = await make_consultation(database)
    log = EventLog(database)
    await asyncio.gather(*(log.append(c.id, "tick", "system", {"i": i}) for i in range(50)))
    events = await log.events(c.id)
    assert [e.seq for e in events] == list(range(1, 51))
    assert sorted(e.data["i"] for e in events) == list(range(50))
    report = await log.verify(c.id)
    assert report.ok and report.count == 50


@pytest.mark.parametrize("chain", ["consultation", SYSTEM_CHAIN])
async def test_two_nodes_appending_to_one_chain(database_url: str, chain: str) -> None:
    """Two processes' worth of engines and logs: the database, not the asyncio lock, decides."""
    a, b = await Database.open(database_url), await Database.open(database_url)
    try:
        chain_id = (await make_consultation(a)).id if chain == "consultation" else chain
        log_a, log_b = EventLog(a), EventLog(b)
        await asyncio.gather(*(log.append(chain_id, "tick", name, {"i": i})
                               for i in range(20)
                               for name, log in (("a", log_a), ("b", log_b))))
        events = await log_a.events(chain_id)
        assert [e.seq for e in events] == list(range(1, 41))
        report = await log_b.verify(chain_id)
        assert report.ok, report.problems
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("bad", [{"when": datetime.now(UTC)}, {"x": object()}, {"s": {1, 2}},
                                 {"nan": float("nan")}, ["not", "a", "dict"]])
async def test_non_json_data_is_rejected(database: Database, bad: object) -> None:
    c = await make_consultation(database)
    log = EventLog(database)
    with pytest.raises(TypeError, match="event data"):
        await log.append(c.id, "x", "y", bad)  # type: ignore[arg-type]
    assert await log.events(c.id) == []
    assert (await get_consultation(database, c.id)).event_seq == 0  # type: ignore[union-attr]


async def test_sqlite_descriptors_stay_within_the_pool(tmp_path) -> None:
    """Issue 17's soak saw the database descriptors go 3 → 21 under load. Bounded: SQLite keeps a
    closed connection's database descriptor for reuse while the others hold their WAL locks, so
    they stay at the most connections ever open at once (the pool's size and overflow), plus
    one WAL descriptor per open connection and the shared -shm."""
    path = tmp_path / "store.db"
    db = await Database.open(f"sqlite+aiosqlite:///{path}")

    def descriptors() -> dict[str, int]:
        found: dict[str, int] = {}
        for fd in Path("/proc/self/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith(str(path)):
                    suffix = target.removeprefix(str(path)) or "db"
                    found[suffix] = found.get(suffix, 0) + 1
        return found

    limit = POOL_SIZE + POOL_OVERFLOW
    holding: list[int] = []
    all_in, gate = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with db.session() as session:
            await session.execute(text("SELECT 1"))
            holding.append(1)
            if len(holding) == limit:
                all_in.set()
            await gate.wait()

    try:
        for _ in range(3):  # busy spells: as many sessions at once as the pool allows
            holding.clear()
            all_in.clear()
            gate.clear()
            holders = [asyncio.create_task(hold()) for _ in range(limit)]
            await asyncio.wait_for(all_in.wait(), 30)
            during = descriptors()
            assert during == {"db": limit, "-wal": limit, "-shm": 1}, during
            gate.set()
            await asyncio.gather(*holders)
            after = descriptors()
            assert after == {"db": limit, "-wal": POOL_SIZE, "-shm": 1}, after
    finally:
        await db.close()
    assert descriptors() == {}
