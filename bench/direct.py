"""The page and signaling relay of the harness's reference call (two browsers, no node).

`/direct.html?role=guardian|doctor` is the page; `/direct-ws?role=...` relays every message to
the other role's socket verbatim and tells the guardian `start` (make the offer) once both are
there. Served by the harness's own event loop on a socket made inside the node's namespace.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from aiohttp import WSMsgType, web

PAGE = Path(__file__).with_name("direct.html")
ROLES = ("guardian", "doctor")


class DirectSignaling:
    def __init__(self) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.app = web.Application()
        self.app.router.add_get("/direct.html", self.page)
        self.app.router.add_get("/direct-ws", self.relay)
        self.runner: web.AppRunner | None = None

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE)

    async def relay(self, request: web.Request) -> web.WebSocketResponse:
        role = request.query.get("role", "")
        if role not in ROLES or role in self.sockets:
            raise web.HTTPBadRequest(text=f"role must be one of {ROLES}, once")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets[role] = ws
        try:
            if len(self.sockets) == len(ROLES):
                await self.sockets["guardian"].send_str(json.dumps({"type": "start"}))
            other = ROLES[1 - ROLES.index(role)]
            async for message in ws:
                if message.type == WSMsgType.TEXT and other in self.sockets:
                    await self.sockets[other].send_str(message.data)
        finally:
            self.sockets.pop(role, None)
        return ws

    async def start(self, sock: socket.socket) -> None:
        """Serve on `sock`, already bound (inside a namespace) and listening."""
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        await web.SockSite(self.runner, sock).start()

    async def stop(self) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()
