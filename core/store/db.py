"""Opening the database: one async engine, schema brought up to date by Alembic on open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Connections kept open, and opened beyond them under load (closed again when returned):
# SQLAlchemy's defaults, spelled out because they bound the node's database descriptors and
# threads. On SQLite each connection is an aiosqlite thread with a descriptor on the database file
# and one on its WAL (the -shm file's is shared). SQLite does not close the database descriptor
# of a connection it closes while other connections of the process hold locks (in WAL mode every
# open connection holds one): it keeps it for the next connection to reuse. So after a busy
# spell the database descriptors stay at the most connections ever open at once, at most
# POOL_SIZE + POOL_OVERFLOW (15), and the WAL's are the open connections (bench/soak.py: 3 → 21).
POOL_SIZE = 5
POOL_OVERFLOW = 10
# Several nodes may start at once against one PostgreSQL: only one of them migrates at a time.
_MIGRATION_LOCK_KEY = 0x7C_5E_ED_01


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config built in code (no alembic.ini), optionally bound to an open connection."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
    command.upgrade(alembic_config(connection), "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores foreign keys unless asked
    cursor.close()


class Database:
    """The engine and session factory; open with `await Database.open(url)`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str) -> Database:
        """Connect and migrate to the latest schema (`alembic upgrade head`)."""
        parsed = make_url(url)
        pool: dict[str, Any] = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                kwargs.update(pool)  # (an in-memory database is one shared connection)
            kwargs["connect_args"] = {"timeout": 30}  # wait for the write lock, not fail
        else:
            kwargs.update(pool, pool_pre_ping=True)
        engine = create_async_engine(url, **kwargs)
        if parsed.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> AsyncSession:
        """A session for `async with db.session() as s:`; objects stay usable after commit."""
        return self._sessions()

    async def ping(self) -> bool:
        """True when the database answers; for health checks, so it never raises."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        await self.engine.dispose()
