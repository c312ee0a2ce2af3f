"""A real node on 127.0.0.1 (SQLite in a temp dir, in-process live state), and clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.client import CallClient
from bench.clip import Clip, encode_opus, encode_vp8
from core.auth import TOKENS_KEY, Role, Tokens
from core.config import Settings, load_settings
from core.context import CONTEXT_KEY, NodeContext
from server.app import create_app
from server.demo import Booking, seed
from signaling.handler import SIGNALING_KEY
from signaling.rooms import Rooms

SECRET = "test-secret-" + "x" * 40


@dataclass
class Node:
    app: web.Application
    server: TestServer
    session: aiohttp.ClientSession
    settings: Settings

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def ctx(self) -> NodeContext:
        return self.app[CONTEXT_KEY]

    @property
    def rooms(self) -> Rooms:
        return self.app[SIGNALING_KEY].rooms

    @property
    def tokens(self) -> Tokens:
        return self.app[TOKENS_KEY]

    async def book(self) -> Booking:
        return await seed(self.ctx.db, self.settings, self.tokens)

    def token(self, role: Role, subject: str, cid: str | None = None,
              ttl: int | None = None) -> str:
        return self.tokens.issue(role, subject, cid, ttl)

    def client(self, token: str, clips: dict[str, Clip] | None = None) -> CallClient:
        return CallClient(self.url, token, clips or {}, self.session)

    async def events(self, cid: str) -> list[dict[str, Any]]:
        return [{"kind": e.kind, "actor": e.actor, "data": e.data}
                for e in await self.ctx.events.events(cid)]

    async def states(self, cid: str) -> list[str]:
        return [e["data"]["to"] for e in await self.events(cid) if e["kind"] == "state"]


def node_settings(tmp: Path, **overrides: Any) -> Settings:
    """Loopback only by default; a test in its own namespaces overrides host and ICE addresses."""
    values: dict[str, Any] = dict(token_secret=SECRET, host="127.0.0.1", port=0,
                                  ice_host_addresses=["127.0.0.1"], ice_servers=[])
    return load_settings(data_dir=tmp, **{**values, **overrides})


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with start_node(node_settings(tmp_path / "node", rejoin_grace_s=3.0)) as n:
        yield n


class start_node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self) -> Node:
        app = create_app(self.settings)
        self.server = TestServer(app, host=self.settings.host)
        await self.server.start_server()
        self.session = aiohttp.ClientSession()
        return Node(app, self.server, self.session, self.settings)

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        await self.server.close()


_CLIPS: dict[str, Clip] = {}


@pytest.fixture(scope="session")
def clips() -> dict[str, Clip]:
    """Small pre-encoded clips (encoding is the costly part, so once per session)."""
    if not _CLIPS:
        _CLIPS["video"] = encode_vp8(320, 240, fps=30, seconds=2.0, bitrate=300_000)
        _CLIPS["audio"] = encode_opus(1.0)
    return _CLIPS
