"""One declaration per HTTP endpoint: who may call it and what it accepts.

`@endpoint(Role.ADMIN, body=NewPatient)` checks the token and the role (core.auth), reads the
body within a time limit, and parses body and query with pydantic before the handler runs, which
then receives them as keyword arguments. A refusal is always a JSON error with a code; nothing a
client sends reaches a handler unchecked. The same declaration is what `server.openapi`
publishes, so the document cannot drift from what the node enforces.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from core.assets import Assets
from core.auth import Handler, Role, json_error, requires
from core.fields import FIELD_CODES

# A body the client declared but does not send holds a connection and a handler: not for long
# (Settings.body_timeout_s, TC_BODY_TIMEOUT).
BODY_TIMEOUT_KEY = web.AppKey("body_timeout_s", float)
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
# What a declared handler takes: the request, and `body=` / `query=` when it declares them.
Declared = Callable[..., Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Endpoint:
    roles: tuple[Role, ...]  # empty: a public route (pages, health)
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    query_token: bool = False  # the token may come as ?token= (EventSource, <video src>)
    upload: tuple[str, ...] = ()  # media types of a raw body (photos), checked by the handler
    auth: str = "bearer"  # "bearer", "public", or "playback" (a per-segment grant in ?pt=)
    summary: str = ""
    events: bool = False  # answers with server-sent events, open until the client leaves


def page(file: Path, summary: str) -> Handler:
    """A page shell: public, as it holds no data (the page reads its token from the URL fragment
    and sends it with its API calls), and never cached."""

    assets = Assets(file.parent)

    async def serve(request: web.Request) -> web.StreamResponse:
        return assets.response(request, file, headers=NO_STORE)

    serve.__doc__ = summary
    return endpoint()(serve)


def declared(handler: object) -> Endpoint | None:
    return getattr(handler, "__endpoint__", None)


def endpoint(*roles: Role, body: type[BaseModel] | None = None,
             query: type[BaseModel] | None = None, query_token: bool = False,
             upload: tuple[str, ...] = (), auth: str | None = None,
             events: bool = False) -> Callable[[Declared], Handler]:
    """Declare and enforce an endpoint; with no roles it is public (or `auth` says how)."""
    kind = auth or ("bearer" if roles else "public")

    def wrap(handler: Declared) -> Handler:
        async def parsed(request: web.Request) -> web.StreamResponse:
            kwargs: dict[str, Any] = {}
            if query is not None:
                kwargs["query"] = parse_query(request, query)
            if body is not None:
                kwargs["body"] = parse_json(await read_body(request), body)
            return await handler(request, **kwargs)

        checked: Handler = requires(*roles, query_token=query_token)(parsed) if roles else parsed
        checked.__name__ = handler.__name__
        checked.__doc__ = handler.__doc__
        checked.__endpoint__ = Endpoint(  # type: ignore[attr-defined]
            tuple(roles), body, query, query_token, upload, kind,
            (handler.__doc__ or "").strip().split("\n")[0], events)
        return checked

    return wrap


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The whole body within the app's time limit: at most the app's size limit, or for a raw
    upload (a photo) at most `limit` bytes, 413 past it whether or not a length was sent."""
    seconds = request.app.get(BODY_TIMEOUT_KEY, 10.0)
    try:
        async with asyncio.timeout(seconds):
            return await (request.read() if limit is None else _read_upto(request, limit))
    except TimeoutError:
        raise json_error(408, "body_timeout",
                         f"the body did not arrive within {seconds:g} s") from None


async def _read_upto(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(request.content_length, limit)
    # Not request.read(): the app's client_max_size is for JSON, an upload has its own limit.
    # `read(n)` returns what has arrived so far, so gather until the end or past the limit.
    body = bytearray()
    while len(body) <= limit:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    raise _too_large(len(body), limit)


def _too_large(size: int, limit: int) -> web.HTTPException:
    return json_error(413, "too_large", f"the body is {size} bytes or more; the limit is {limit}")


def parse_json(raw: bytes, model: type[M]) -> M:
    """The body as `model`: 400 when it is not JSON (nesting is bounded by the parser), 422 with
    the field when a value is not what the model accepts."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        refusal = _refusal(exc, "the body")
        if not _escape_refused(exc):
            raise refusal from None
    # JSON allows any \uXXXX escape, a lone surrogate too, which the fast parser refuses as
    # not JSON. Python's parser takes it, so the field's own type refuses it, naming the field.
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise refusal from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _refusal(exc, "the body") from None


def _escape_refused(exc: ValidationError) -> bool:
    first = exc.errors(include_url=False, include_input=False)[0]
    return first["type"] == "json_invalid" and ("surrogate" in first["msg"]
                                                or "hex escape" in first["msg"])


def parse_query(request: web.Request, model: type[M]) -> M:
    values: dict[str, str] = {}
    for key, value in request.query.items():
        if key in values:
            raise json_error(400, "bad_query", f"'{key}' is given more than once")
        values[key] = value
    values.pop("token", None)  # the credential, already checked
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _refusal(exc, "the query") from None


def _refusal(exc: ValidationError, where: str) -> web.HTTPException:
    first = exc.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return json_error(400, "bad_json", f"{where} must be JSON: {first['msg']}")
    if first["type"] == "model_type":
        return json_error(400, "bad_json", f"{where} must be a JSON object")
    code = "bad_query" if where == "the query" else "bad_field"
    if not first["loc"]:  # a rule between fields (a model validator), or a key that is not text
        return json_error(422, code, first["msg"])
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] in FIELD_CODES:  # a refusal people should understand by its own code
        return json_error(422, first["type"], f"'{field}': {first['msg']}", field=field,
                          zh=FIELD_CODES[first["type"]])
    return json_error(422, code, f"'{field}': {first['msg']}", field=field)
