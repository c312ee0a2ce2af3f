"""HTTP routes of the recorder: the replay page, search, segments, playback, verify, holds."""

from __future__ import annotations

from aiohttp import web

from .service import Recorder

RECORDER_KEY = web.AppKey("recorder", Recorder)


def add_routes(app: web.Application) -> None:
    from . import routes

    routes.add(app)
