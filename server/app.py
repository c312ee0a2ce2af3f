"""The node's aiohttp application: its routes, and the services server/node.py opens."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from core.auth import TOKENS_KEY, Tokens
from core.config import Settings
from core.context import CONTEXT_KEY
from core.endpoint import BODY_TIMEOUT_KEY, endpoint
from identity.doctor import registry_api
from identity.guardian import guardians
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
from server.node import Node
from server.quality import api as quality_api
from signaling.handler import websocket

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024, middlewares=[json_errors])
    app[TOKENS_KEY] = Tokens(settings.token_secret, settings.token_ttl_s)
    app[BODY_TIMEOUT_KEY] = settings.body_timeout_s
    app.cleanup_ctx.extend(Node(settings).contexts())
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
    registry_api.add_routes(app)  # issue 3: registry, face enrollment, verification
    guardians.add_routes(app)  # issue 4: guardian photos
    openapi.add_routes(app)  # issue 17: the document of every route above
    return app


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
