"""Two real node processes (`python -m server run`) sharing a fresh PostgreSQL database and a
real Redis: the cluster of tests/test_cluster.py and tests/test_cluster_store.py."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from core.auth import Role, Tokens
from core.config import load_settings
from core.store import Database, EventLog
from core.store.events import Event
from server.demo import Booking, seed
from signaling import ice

from .db_fixtures import fresh_pg_database, pg_dsn
from .node_process import NodeProcess, free_port

SECRET = secrets.token_urlsafe(40)
FAST_CLUSTER = {"TC_HEARTBEAT": "0.5", "TC_NODE_TTL": "2", "TC_IDENTITY_REQUIRED": "0",
                "TC_REJOIN_GRACE": "20"}  # a lost node noticed in ~2 s, room to rejoin


@dataclass
class TwoNodes:
    a: NodeProcess
    b: NodeProcess
    database_url: str
    redis_url: str
    tokens: Tokens

    async def book(self, tmp: Path) -> Booking:
        settings = load_settings(data_dir=tmp / "seed", token_secret=SECRET,
                                 database_url=self.database_url)
        db = await Database.open(self.database_url)
        try:
            return await seed(db, settings, self.tokens)
        finally:
            await db.close()

    async def events(self, cid: str) -> list[Event]:
        db = await Database.open(self.database_url)
        try:
            return await EventLog(db).events(cid)
        finally:
            await db.close()

    def auth(self, role: Role, subject: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.issue(role, subject)}"}


@contextlib.asynccontextmanager
async def two_nodes(tmp: Path, redis_url: str, **env: str) -> AsyncIterator[TwoNodes]:
    """Nodes A and B on a fresh database; `env` adds to FAST_CLUSTER's settings."""
    async with fresh_pg_database(pg_dsn()) as url:
        env = {"DATABASE_URL": url, "REDIS_URL": redis_url, **FAST_CLUSTER, **env}
        a = NodeProcess(tmp / "a", free_port(), SECRET, TC_NODE_ID="node-a", **env)
        b = NodeProcess(tmp / "b", free_port(), SECRET, TC_NODE_ID="node-b", **env)
        ice.use_host_addresses(["127.0.0.1"])  # for this process's clients: loopback only
        try:
            a.start()  # first alone: it runs the migrations
            b.start()
            yield TwoNodes(a, b, url, redis_url, Tokens(SECRET, 3600))
        finally:
            ice.use_host_addresses([])
            a.stop()
            b.stop()
