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

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from server.store import Database

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
