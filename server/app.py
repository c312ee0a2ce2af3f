"""The node: one aiohttp application wiring store, live state, lifecycle, signaling and pages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

import identity
from core import metrics
from core.auth import TOKENS_KEY, Role, Tokens
from core.cluster import Cluster
from core.config import Settings
from core.consent import consent_gate
from core.endpoint import BODY_TIMEOUT_KEY, endpoint
from core.lifecycle import Gate, Lifecycle
from core.live import make_live_state
from core.policy.check import eligibility_gate
from core.store import Database, EventLog
from identity import guardians, prescribing, presence  # issue 4
from recorder import Recorder
from recorder import routes as recorder_routes
from recorder.service import RECORDER_KEY
from server import (
    api,
    booking_api,
    metrics_api,
    openapi,
    ops_api,
    precall,
    report_api,
    worklist_api,
)
from server.errors import json_errors
from server.orphans import OrphanSweeper
from server.quality import api as quality_api
from signaling import ice
from signaling.context import CONTEXT_KEY, NodeContext
from signaling.handler import websocket
from signaling.protocol import ParticipantStatus
from signaling.rooms import Rooms

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SETTINGS_KEY = web.AppKey("settings", Settings)

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024, middlewares=[json_errors])
    app[SETTINGS_KEY] = settings
    app[TOKENS_KEY] = Tokens(settings.token_secret, settings.token_ttl_s)
    app[BODY_TIMEOUT_KEY] = settings.body_timeout_s
    app.cleanup_ctx.append(_node)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/metrics", metrics_api.metrics)
    app.router.add_get("/metrics/timing", metrics_api.timing)
    app.router.add_get("/readyz", readyz)
    ops_api.add_routes(app, STATIC_DIR)  # issue 7: live monitoring for ops
    api.add_routes(app, STATIC_DIR)
    booking_api.add_routes(app)  # issue 6: booking, consent, referral, export
    quality_api.add_routes(app, STATIC_DIR)  # issue 15: complaints and adverse events
    precall.add_routes(app)  # issue 11: the pre-call connection test
    report_api.add_routes(app, STATIC_DIR)  # issue 15: the periodic progress report
    worklist_api.add_routes(app, STATIC_DIR)  # issue 15: the doctor's day, the guardian's queue
    recorder_routes.add(app)  # issue 5: recordings and the auditor's replay
    identity.install(app, settings.identity)  # issue 3: registry, face enrollment, verification
    guardians.add_routes(app, settings.presence)  # issue 4: guardian photos, presence
    openapi.add_routes(app)  # issue 17: the document of every route above
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
    cluster = Cluster(settings, live, events, rooms.ids)
    ctx = NodeContext(settings, db, events, lifecycle, live, rooms, cluster,
                      prescriber=prescribing.prescribe)
    rooms.bind(ctx)
    lifecycle.listeners.append(rooms.on_transition)
    lifecycle.listeners.append(cluster.publish_transition)
    # Ops ending a call through another node: the host's rooms, recorder, identity and presence
    # must all hear it, exactly as for a transition made here.
    cluster.on_remote_transition.append(lifecycle.notify)
    cluster.on_reclaimed.append(rooms.republish)
    await cluster.start()
    watcher = asyncio.create_task(metrics.watch_loop_and_cpu(settings.loop_watch_s),
                                  name="loop-watch")
    lifecycle.accept_gates.append(("guardian_connected", _guardian_connected(rooms)))
    # Issue 6: the policy again on the day the consultation starts, and informed consent.
    lifecycle.accept_gates.append(
        ("eligibility", eligibility_gate(db, events, app[booking_api.POLICY_KEY], ctx.clock)))
    lifecycle.accept_gates.append(("consent", consent_gate(db)))
    app[CONTEXT_KEY] = ctx
    recorder = app[RECORDER_KEY] = Recorder(ctx)  # issue 5
    await recorder.open()  # recovers what a killed process left unfinished
    lifecycle.listeners.insert(0, recorder.on_transition)  # before the room closes
    rooms.on_resumed.append(recorder.resume)  # issue 7: recording continues after a failover
    # Issue 3: face verification with liveness (accept gate "identity") and re-checks.
    identity_service = await identity.start(app, ctx)
    rooms.on_resumed.append(identity_service.resume)  # re-checks go on after a failover
    # Issue 4: guardian on camera in pediatric consultations (accept gate "guardian_present").
    presence_service = await presence.start(ctx, app[guardians.PRESENCE_CONFIG_KEY],
                                            identity_service)
    app[presence.PRESENCE_KEY] = presence_service
    if presence_service is not None:
        rooms.on_resumed.append(presence_service.resume)  # presence goes on after a failover
    orphans = OrphanSweeper(ctx)  # calls a dead node left under way, that nobody came back to
    orphans.start()
    log.info("node %s ready on %s", settings.node_id, settings.public_url)
    try:
        yield
    finally:
        watcher.cancel()
        await orphans.close()
        await cluster.close()
        if presence_service is not None:  # issue 4
            await presence_service.close()
        await identity_service.close()
        await recorder.close()
        await rooms.close_all()
        await live.close()
        await db.close()


def _guardian_connected(rooms: Rooms) -> Gate:
    async def gate(consultation_id: str) -> str | None:
        room = rooms.get(consultation_id)
        if room is None or room.participants[Role.GUARDIAN].status != ParticipantStatus.CONNECTED:
            return "the patient side is not connected"
        return None

    return gate


@endpoint()
async def readyz(request: web.Request) -> web.Response:
    """Ready only when the database and the live-state store both answer. `recording_store`
    says where recordings go and whether that store enforces retention (issue 12): detail for
    ops, not a readiness condition (a store without Object Lock is a choice, not a fault).
    `recording_key` names the master key new segments are wrapped under, and warns when a
    node of several has a key of its own (TC_RECORDING_KEY unset)."""
    ctx = request.app.get(CONTEXT_KEY)
    checks = {"database": False, "live_state": False}
    if ctx is not None:
        checks = {"database": await ctx.db.ping(), "live_state": await ctx.live.ping()}
    ok = all(checks.values())
    recorder = request.app.get(RECORDER_KEY)
    store = recorder.store_status if recorder is not None else None
    key = recorder.key_status if recorder is not None else None
    return web.json_response({"ready": ok, **checks, "recording_store": store,
                              "recording_key": key},
                             status=200 if ok else 503)
