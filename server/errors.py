"""Every refusal is a JSON error with a code, including aiohttp's own (404, 405, 413)."""

from __future__ import annotations

import json
import logging
import re

from aiohttp import web

from core.auth import Handler, json_error

log = logging.getLogger(__name__)


def _code(reason: str) -> str:
    """`Request Entity Too Large` -> `request_entity_too_large`."""
    return re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_") or "error"


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") \
            else exc.reason
        body = json.dumps({"error": {"code": _code(exc.reason), "message": message}},
                          ensure_ascii=False)
        raise type(exc)(text=body, content_type="application/json",
                         headers={k: v for k, v in exc.headers.items()
                                  if k.lower() not in ("content-type", "content-length")},
                         **_args(exc)) from None
    except Exception:
        # A fault of ours: logged with its traceback for us, a plain code for the client.
        log.exception("unhandled error in %s %s", request.method, request.path)
        raise json_error(500, "internal", "an internal error; it has been logged") from None


def _args(exc: web.HTTPException) -> dict[str, object]:
    """The constructor arguments some error classes require besides the body."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return {"method": exc.method, "allowed_methods": exc.allowed_methods}
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return {"max_size": 0, "actual_size": 0}
    return {}
