"""The durable store on SQLite and PostgreSQL: schema, records, state compare-and-set (the
audit chain: tests/test_store_events.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, StatementError

from core.store import (
    GENESIS_HASH,
    Database,
    models,
)
from core.store.db import POOL_OVERFLOW, POOL_SIZE
from core.store.records import (
    create_doctor,
    create_hospital,
    get_consultation,
    get_doctor,
    get_guardian,
    get_hospital,
    get_patient,
    list_consultations,
    set_consultation_state,
)

from .db_fixtures import BEIJING, make_consultation


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
