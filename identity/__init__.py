"""Identity: doctor face enrollment and verification with liveness, continuous assurance, and the
doctor registry admin API (issue 3). `install(app, config)` wires it into the node."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from core.config.identity import IdentityConfig

if TYPE_CHECKING:
    from signaling.context import NodeContext

    from .service import IdentityService

CONFIG_KEY = web.AppKey("identity_config", IdentityConfig)


def install(app: web.Application, config: IdentityConfig) -> None:
    """Routes now; the service (which needs the node context) starts with the node."""
    from .registry_api import add_routes

    app[CONFIG_KEY] = config
    add_routes(app)


async def start(app: web.Application, ctx: NodeContext) -> IdentityService:
    from .registry_api import IDENTITY_KEY
    from .service import IdentityService

    svc = IdentityService(app[CONFIG_KEY], ctx)
    svc.start()
    app[IDENTITY_KEY] = svc
    return svc
