"""The node: one aiohttp application wiring store, live state, lifecycle, signaling and pages."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from server import api
from server.auth import TOKENS_KEY, Role, Tokens
from server.config import Settings
from server.lifecycle import Gate, Lifecycle
from server.live import make_live_state
from server.store import Database, EventLog
from signaling import ice
from signaling.context import NodeContext
from signaling.handler import CONTEXT_KEY, websocket
from signaling.rooms import Rooms

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SETTINGS_KEY = web.AppKey("settings", Settings)

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS_KEY] = settings
    app[TOKENS_KEY] = Tokens(settings.token_secret, settings.token_ttl_s)
    app.cleanup_ctx.append(_node)
    app.router.add_get("/ws", websocket)
    api.add_routes(app, STATIC_DIR)
    return app


async def _node(app: web.Application) -> AsyncIterator[None]:
    """Open what the node depends on, and close it in reverse order on shutdown."""
    settings = app[SETTINGS_KEY]
    ice.use_host_addresses(settings.ice_host_addresses)
    settings.recordings_dir.mkdir(parents=True, exist_ok=True)
    db = await Database.open(settings.database_url)
    live = make_live_state(settings.redis_url)
    await live.start()
    events = EventLog(db)
    rooms = Rooms()
    lifecycle = Lifecycle(db, events)
    ctx = NodeContext(settings, db, events, lifecycle, live, rooms)
    rooms.bind(ctx)
    lifecycle.listeners.append(rooms.on_transition)
    lifecycle.accept_gates.append(("guardian_connected", _guardian_connected(rooms)))
    app[CONTEXT_KEY] = ctx
    log.info("node %s ready on %s", settings.node_id, settings.public_url)
    try:
        yield
    finally:
        await rooms.close_all()
        await live.close()
        await db.close()


def _guardian_connected(rooms: Rooms) -> Gate:
    async def gate(consultation_id: str) -> str | None:
        room = rooms.get(consultation_id)
        if room is None or room.participants[Role.GUARDIAN].status != "connected":
            return "the patient side is not connected"
        return None

    return gate
