"""The base services every feature needs, built once by the composition root (server/node.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from core.clock import Clock
from core.config import Settings
from core.lifecycle import Lifecycle
from core.live import LiveState
from core.store import Database, EventLog


@dataclass(frozen=True)
class NodeContext:
    settings: Settings
    db: Database
    events: EventLog
    lifecycle: Lifecycle
    live: LiveState
    clock: Clock = field(default_factory=Clock)


# Where the app keeps the node's context, for the HTTP handlers of every package.
CONTEXT_KEY = web.AppKey("node_context", NodeContext)
