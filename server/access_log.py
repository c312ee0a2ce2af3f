"""Access log without secrets: the WebSocket's `?token=` must never be written to a log."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class RedactingAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.1fms",
            request.remote,
            request.method,
            request.path,  # the path only: query strings may carry tokens
            response.status,
            time * 1000,
        )
