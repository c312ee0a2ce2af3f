"""Database fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL is reached through TC_TEST_PG_DSN (the Unix socket by default: the suite runs in a
network namespace with no TCP route to the host). Each test gets a fresh database, dropped after.
An unreachable PostgreSQL fails the test: a skipped backend would pass CI untested.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from core.store import Consultation, Database
from core.store.records import (
    create_consultation,
    create_doctor,
    create_guardian,
    create_hospital,
    create_patient,
)

PG_DSN_DEFAULT = "postgresql+asyncpg://root@/postgres?host=/var/run/postgresql"


def pg_dsn() -> str:
    return os.environ.get("TC_TEST_PG_DSN") or PG_DSN_DEFAULT


@asynccontextmanager
async def fresh_pg_database(dsn: str) -> AsyncIterator[str]:
    """Create a uniquely named database, yield its URL, then drop it."""
    name = f"tc_test_{secrets.token_hex(6)}"
    admin = create_async_engine(dsn, isolation_level="AUTOCOMMIT",
                                connect_args={"timeout": 10})
    failure = None
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        failure = exc
    if failure is not None:
        await admin.dispose()
        pytest.fail(f"PostgreSQL is not reachable through TC_TEST_PG_DSN={dsn!r}: {failure!r}. "
                    "Start it (scripts/test-services.sh) or point TC_TEST_PG_DSN at one.",
                    pytrace=False)
    try:
        yield make_url(dsn).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name})
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        await admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[str]:
    """The URL of an empty database on each backend (for tests that open it themselves)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/store.db"
    else:
        async with fresh_pg_database(pg_dsn()) as url:
            yield url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An open, migrated Database on each backend."""
    db = await Database.open(database_url)
    try:
        yield db
    finally:
        await db.close()


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
