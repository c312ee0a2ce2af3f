"""The composition root: every service of the node built once, with the narrow parts it needs.

Each resource opens in its own aiohttp cleanup context, in the order below, so a start that fails
half-way closes exactly what was opened, in reverse. `wire` is the one place where the services
are hooked into each other: the lifecycle's listeners and accept gates, the rooms' hooks and the
cluster's, each list in the order it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from core import metrics
from core.auth import Role
from core.cluster import Cluster
from core.config import Settings
from core.consent import consent_gate
from core.context import CONTEXT_KEY, NodeContext
from core.lifecycle import Gate, Lifecycle
from core.live import LiveState, make_live_state
from core.policy import load_policy
from core.policy.check import eligibility_gate
from core.store import Database, EventLog
from identity.doctor.registry_api import IDENTITY_KEY
from identity.doctor.service import IdentityService
from identity.faces.host import FACES_KEY
from identity.guardian.presence import PRESENCE_KEY, PresenceService
from recorder import Recorder
from recorder.service import RECORDER_KEY
from server.orphans import OrphanSweeper
from server.prescribing import Prescriber
from signaling import ice
from signaling.handler import SIGNALING_KEY, Signaling
from signaling.protocol import ParticipantStatus
from signaling.rooms import Rooms

log = logging.getLogger(__name__)

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


class Node:
    """The services of one node, opened by `contexts()` in order (aiohttp's cleanup_ctx)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db: Database
        self.live: LiveState
        self.ctx: NodeContext
        self.rooms: Rooms
        self.cluster: Cluster
        self.recorder: Recorder
        self.identity: IdentityService
        self.presence: PresenceService | None = None

    def contexts(self) -> list[CleanupContext]:
        return [self._database, self._live_state, self._calls, self._recorder, self._identity,
                self._presence, self._wired, self._cluster, self._orphans, self._loop_watch]

    async def _database(self, app: web.Application) -> AsyncIterator[None]:
        self.db = await Database.open(self.settings.database_url)
        try:
            yield
        finally:
            await self.db.close()

    async def _live_state(self, app: web.Application) -> AsyncIterator[None]:
        self.live = make_live_state(self.settings.redis_url)
        try:
            await self.live.start()
            yield
        finally:
            await self.live.close()

    async def _calls(self, app: web.Application) -> AsyncIterator[None]:
        """The base services every call needs, and the rooms: calls end before the stores."""
        settings = self.settings
        ice.use_host_addresses(settings.ice_host_addresses)
        events = EventLog(self.db)
        self.ctx = app[CONTEXT_KEY] = NodeContext(settings, self.db, events,
                                                 Lifecycle(self.db, events), self.live)
        self.rooms = Rooms(self.ctx)
        self.cluster = Cluster(settings, self.live, events, self.rooms.ids)
        try:
            yield
        finally:
            await self.rooms.close_all()

    async def _recorder(self, app: web.Application) -> AsyncIterator[None]:
        """Issue 5; `open` recovers what a killed process left unfinished."""
        self.settings.recordings_dir.mkdir(parents=True, exist_ok=True)
        self.recorder = app[RECORDER_KEY] = Recorder(self.ctx, self.rooms.get)
        try:
            await self.recorder.open()
            yield
        finally:
            await self.recorder.close()

    async def _identity(self, app: web.Application) -> AsyncIterator[None]:
        """Issue 3: face verification with liveness (accept gate "identity") and re-checks."""
        self.identity = IdentityService(self.settings.identity, self.ctx, self.rooms.get)
        app[IDENTITY_KEY] = app[FACES_KEY] = self.identity
        try:
            self.identity.start()
            yield
        finally:
            await self.identity.close()

    async def _presence(self, app: web.Application) -> AsyncIterator[None]:
        """Issue 4: the guardian on camera in pediatric consultations."""
        config = self.settings.presence
        if not config.enabled:
            log.warning("TC_GUARDIAN_PRESENCE=0: guardians of children are NOT checked on camera")
            yield
            return
        self.presence = app[PRESENCE_KEY] = PresenceService(config, self.ctx, self.identity,
                                                            self.rooms.get)
        try:
            yield
        finally:
            await self.presence.close()

    async def _wired(self, app: web.Application) -> AsyncIterator[None]:
        self.wire()
        app[SIGNALING_KEY] = Signaling(self.ctx, self.rooms, self.cluster, Prescriber(
            self.ctx, self.presence, self.settings.presence))
        yield

    def wire(self) -> None:
        """Every hook between the services, each list in the order it runs."""
        ctx, rooms, cluster, identity, presence = (self.ctx, self.rooms, self.cluster,
                                                   self.identity, self.presence)
        lifecycle = ctx.lifecycle
        lifecycle.listeners.extend([
            self.recorder.on_transition,  # before the room closes: the last frames are written
            rooms.on_transition,
            cluster.publish_transition,
            identity.on_transition,
            *([presence.on_transition] if presence else []),
        ])
        lifecycle.accept_gates.extend([
            ("guardian_connected", _guardian_connected(rooms)),
            # Issue 6: the policy again on the day the consultation starts, and informed consent.
            ("eligibility", eligibility_gate(ctx.db, ctx.events, load_policy(), ctx.clock)),
            ("consent", consent_gate(ctx.db)),
            *([("identity", identity.gate())] if identity.config.required else []),
            *([("guardian_present", presence.gate())] if presence else []),
        ])
        rooms.on_joined.extend([identity.rejoined, *([presence.rejoined] if presence else [])])
        rooms.on_emptied.extend([presence.emptied] if presence else [])
        # Issue 7: recording, re-checks and presence go on on the node a call fails over to.
        rooms.on_resumed.extend([self.recorder.resume, identity.resume,
                                 *([presence.resume] if presence else [])])
        # Ops ending a call through another node: the host's rooms, recorder, identity and
        # presence must all hear it, exactly as for a transition made here.
        cluster.on_remote_transition.append(lifecycle.notify)
        cluster.on_reclaimed.append(rooms.republish)

    async def _cluster(self, app: web.Application) -> AsyncIterator[None]:
        await self.cluster.start()
        try:
            yield
        finally:
            await self.cluster.close()

    async def _orphans(self, app: web.Application) -> AsyncIterator[None]:
        """Calls a dead node left under way, that nobody came back to."""
        orphans = OrphanSweeper(self.ctx, self.rooms.get)
        orphans.start()
        try:
            yield
        finally:
            await orphans.close()

    async def _loop_watch(self, app: web.Application) -> AsyncIterator[None]:
        watcher = asyncio.create_task(metrics.watch_loop_and_cpu(self.settings.loop_watch_s),
                                      name="loop-watch")
        log.info("node %s ready on %s", self.settings.node_id, self.settings.public_url)
        yield
        watcher.cancel()


def _guardian_connected(rooms: Rooms) -> Gate:
    async def gate(consultation_id: str) -> str | None:
        room = rooms.get(consultation_id)
        if room is None or room.participants[Role.GUARDIAN].status != ParticipantStatus.CONNECTED:
            return "the patient side is not connected"
        return None

    return gate
