"""The event loop the node runs on.

Every media datagram in and out of the node is a readiness callback, a `recvfrom` or `sendto`
and a few loop calls; uvloop (libuv, in C) does that part for less than asyncio's pure-Python
selector loop: 10-13 % less of the node's CPU at 8 consultations, the same at 1 (bench/README.md,
"Against Janus"). TC_EVENT_LOOP=asyncio keeps the standard loop, for comparing the two or
debugging with asyncio's own tools.
"""

from __future__ import annotations

import asyncio


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    """A fresh loop of the kind `name` ("uvloop" or "asyncio") names."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
