"""One declaration per HTTP endpoint: who may call it and what it accepts.

`@endpoint(Role.ADMIN, body=NewPatient)` checks the token and the role (server.auth), reads the
body within a time limit, and parses body and query with pydantic before the handler runs, which
then receives them as keyword arguments. A refusal is always a JSON error with a code; nothing a
client sends reaches a handler unchecked. The same declaration is what `server.openapi`
publishes, so the document cannot drift from what the node enforces.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from server.auth import Role, json_error, requires

# A body the client declared but does not send holds a connection and a handler: not for long
# (Settings.body_timeout_s, TC_BODY_TIMEOUT).
BODY_TIMEOUT_KEY = web.AppKey("body_timeout_s", float)
Handler = Callable[..., Awaitable[web.StreamResponse]]
Wrapped = Callable[[web.Request], Awaitable[web.StreamResponse]]
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


def declared(handler: object) -> Endpoint | None:
    return getattr(handler, "__endpoint__", None)


def endpoint(*roles: Role, body: type[BaseModel] | None = None,
             query: type[BaseModel] | None = None, query_token: bool = False,
             upload: tuple[str, ...] = (), auth: str | None = None) -> Callable[[Handler], Wrapped]:
    """Declare and enforce an endpoint; with no roles it is public (or `auth` says how)."""
    kind = auth or ("bearer" if roles else "public")

    def wrap(handler: Handler) -> Wrapped:
        async def parsed(request: web.Request) -> web.StreamResponse:
            kwargs: dict[str, Any] = {}
            if query is not None:
                kwargs["query"] = parse_query(request, query)
            if body is not None:
                kwargs["body"] = parse_json(await read_body(request), body)
            return await handler(request, **kwargs)

        checked: Wrapped = requires(*roles, query_token=query_token)(parsed) if roles else parsed
        checked.__name__ = handler.__name__
        checked.__doc__ = handler.__doc__
        checked.__endpoint__ = Endpoint(  # type: ignore[attr-defined]
            tuple(roles), body, query, query_token, upload, kind,
            (handler.__doc__ or "").strip().split("\n")[0])
        return checked

    return wrap


async def read_body(request: web.Request) -> bytes:
    """The whole body, within the app's size limit and its time limit."""
    async with body_deadline(request):
        return await request.read()


@contextlib.asynccontextmanager
async def body_deadline(request: web.Request) -> AsyncIterator[None]:
    """Refuse (408) a body that has not arrived within the app's limit."""
    limit = request.app.get(BODY_TIMEOUT_KEY, 10.0)
    try:
        async with asyncio.timeout(limit):
            yield
    except TimeoutError:
        raise json_error(408, "body_timeout",
                         f"the body did not arrive within {limit:g} s") from None


def parse_json(raw: bytes, model: type[M]) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _refusal(exc, "the body") from None


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
    field = ".".join(str(part) for part in first["loc"])
    code = "bad_query" if where == "the query" else "bad_field"
    return json_error(422, code, f"'{field}': {first['msg']}", field=field)
