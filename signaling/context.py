"""What the signaling layer needs from the node, gathered in one object the app builds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from core.clock import Clock
from core.cluster import Cluster
from core.config import Settings
from core.lifecycle import Lifecycle
from core.live import LiveState
from core.store import Database, EventLog

if TYPE_CHECKING:
    from .room import Room
    from .rooms import Rooms


@dataclass
class NodeContext:
    settings: Settings
    db: Database
    events: EventLog
    lifecycle: Lifecycle
    live: LiveState
    rooms: Rooms
    cluster: Cluster
    clock: Clock = field(default_factory=Clock)
    # `prescribe` during the call (issue 4: refused for under-6s without the guardian on camera):
    # identity's, wired by the app (server/app.py); None where nothing may be prescribed.
    prescriber: Prescriber | None = None


Prescriber = Callable[["NodeContext", "Room", str, str, Any], Awaitable[dict[str, Any]]]


# Where the app keeps the node's context, for the HTTP handlers of every package.
CONTEXT_KEY = web.AppKey("node_context", NodeContext)
