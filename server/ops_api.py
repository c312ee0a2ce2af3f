"""Ops: every live consultation across all nodes, updated live, and ending one with a reason.

The view reads only the shared live state (nodes, consultations, participants, call stats,
alerts), so the ops page on any node sees the whole cluster. Updates go out as server-sent events:
a snapshot every second plus each alert as it happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from core import fields
from core.alerts import ALERTS
from core.auth import CLAIMS_KEY, Role, json_error
from core.context import CONTEXT_KEY
from core.endpoint import endpoint
from core.lifecycle import State, TransitionError
from core.live import LiveStateUnavailable
from signaling.handler import SIGNALING_KEY

SNAPSHOT_EVERY_S = 1.0


def add_routes(app: web.Application, static_dir: Path) -> None:
    @endpoint()
    async def ops_page(request: web.Request) -> web.FileResponse:
        """The ops page (it asks for an ops token)."""
        return web.FileResponse(static_dir / "ops.html", headers={"Cache-Control": "no-store"})

    app.router.add_get("/ops", ops_page)
    app.router.add_get("/api/ops/live", live_view)
    # No HEAD (aiohttp adds one to every GET): it would stream forever (issue 17). 405.
    app.router.add_get("/api/ops/stream", stream, allow_head=False)
    app.router.add_post("/api/ops/consultations/{cid}/end", end_consultation)
    app.router.add_post("/api/ops/drain", drain)


async def snapshot(request: web.Request) -> dict[str, Any]:
    live = request.app[CONTEXT_KEY].live
    try:
        return {"type": "snapshot", "nodes": await live.nodes(),
                "consultations": await live.live_consultations(), "live_state": "ok"}
    except LiveStateUnavailable as exc:
        return {"type": "snapshot", "nodes": {}, "consultations": {},
                "live_state": f"unavailable: {exc}"}


@endpoint(Role.OPS, Role.ADMIN)
async def live_view(request: web.Request) -> web.Response:
    """Every live consultation across the cluster, once."""
    return web.json_response(await snapshot(request))


@endpoint(Role.OPS, Role.ADMIN, query_token=True, events=True)
async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events (EventSource cannot set headers, hence the token in the query)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    live = request.app[CONTEXT_KEY].live
    alerts = None
    with contextlib.suppress(LiveStateUnavailable):
        alerts = await live.subscribe(ALERTS)
    try:
        while True:
            await _send(response, await snapshot(request))
            deadline = asyncio.get_running_loop().time() + SNAPSHOT_EVERY_S
            while alerts is not None:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    alert = await alerts.get(timeout=remaining)
                except TimeoutError:
                    break
                await _send(response, {"type": "alert", **alert})
            if alerts is None:
                await asyncio.sleep(SNAPSHOT_EVERY_S)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if alerts is not None:
            await alerts.aclose()
    return response


async def _send(response: web.StreamResponse, message: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(message, ensure_ascii=False)}\n\n".encode())


class EndRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: fields.text(500)  # type: ignore[valid-type]


@endpoint(Role.OPS, Role.ADMIN, body=EndRequest)
async def end_consultation(request: web.Request, body: EndRequest) -> web.Response:
    """Ops ends a live consultation at once; the event names who did it and why.

    Ops cannot refer a patient (that is the doctor's clinical decision), so the consultation
    ends `aborted` with the reason rather than `terminated` with a referral.
    """
    ctx = request.app[CONTEXT_KEY]
    claims = request[CLAIMS_KEY]
    cid = request.match_info["cid"]
    reason = body.reason
    try:
        change = await ctx.lifecycle.transition(
            cid, State.ABORTED, f"{claims.role}:{claims.subject}", f"ended by ops: {reason}",
            {"by": "ops"})
    except KeyError:
        raise json_error(404, "no_consultation", "no such consultation") from None
    except TransitionError as exc:
        raise json_error(409, "bad_state", str(exc)) from None
    return web.json_response({"consultation": cid, "state": str(change.state)})


@endpoint(Role.OPS, Role.ADMIN)
async def drain(request: web.Request) -> web.Response:
    """Drain this node before a shutdown: its calls go on, new consultations go to the others."""
    signaling = request.app[SIGNALING_KEY]
    ctx, rooms = signaling.ctx, signaling.rooms
    claims = request[CLAIMS_KEY]
    signaling.cluster.draining = True
    await ctx.events.append("system", "node.draining", f"{claims.role}:{claims.subject}",
                            {"node": ctx.settings.node_id, "hosting": len(rooms)})
    return web.json_response({"node": ctx.settings.node_id, "draining": True,
                              "hosting": rooms.ids()})
