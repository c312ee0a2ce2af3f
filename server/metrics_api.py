"""HTTP: the node's Prometheus metrics (core/metrics.py) and its own delays
(GET /metrics/timing)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.auth import Role
from core.endpoint import endpoint
from core.metrics import LOOP_LAGS, REGISTRY
from signaling.delay import FORWARDING


@endpoint(Role.OPS, Role.ADMIN)
async def metrics(request: web.Request) -> web.Response:
    """Scrapers send an ops token (Prometheus: `authorization: {credentials: ...}`)."""
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@endpoint(Role.OPS, Role.ADMIN)
async def timing(request: web.Request) -> web.Response:
    """The node's own delays as cumulative histograms (signaling/delay.py): what forwarding a
    frame costs it per kind, and the event loop's lag. Subtract two reads for a window."""
    return web.json_response({"forwarding": FORWARDING.snapshot(),
                              "loop_lag": LOOP_LAGS.snapshot()})
