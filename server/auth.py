"""Signed, expiring access tokens and the role checks every route and the WebSocket apply.

A token names who (subject), in which capacity (role) and, for the two call roles, for which
consultation. Nothing is trusted from the client beyond what the signature covers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from aiohttp import web

ALGORITHM = "HS256"
ISSUER = "teleconsult"


class Role(StrEnum):
    DOCTOR = "doctor"
    GUARDIAN = "guardian"
    AUDITOR = "auditor"
    OPS = "ops"
    ADMIN = "admin"
    REGULATOR = "regulator"  # the supervision platform: export and report only (least data)
    # A doctor's working day: their own worklist only, never a call. Joining one of their own
    # consultations from it mints a per-consultation DOCTOR token (server/worklist_api.py).
    DOCTOR_DAY = "doctor_day"
    QUALITY = "quality"  # staff who handle complaints and adverse events (with admin)


CALL_ROLES = frozenset({Role.DOCTOR, Role.GUARDIAN})


@dataclass(frozen=True)
class Claims:
    role: Role
    subject: str
    consultation_id: str | None
    expires_at: int


class TokenError(Exception):
    """A token that cannot be used: missing, malformed, badly signed or expired."""


class Tokens:
    def __init__(self, secret: str, ttl_s: int) -> None:
        if len(secret) < 32:
            raise ValueError("TC_TOKEN_SECRET must be at least 32 characters")
        self._secret = secret
        self._ttl_s = ttl_s

    def issue(
        self,
        role: Role,
        subject: str,
        consultation_id: str | None = None,
        ttl_s: int | None = None,
    ) -> str:
        if role in CALL_ROLES and not consultation_id:
            raise ValueError(f"a {role} token must name its consultation")
        if role == Role.DOCTOR_DAY and consultation_id:
            raise ValueError("a doctor_day token names no consultation (it opens the worklist)")
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "sub": subject,
            "role": str(role),
            "iat": now,
            "exp": now + (self._ttl_s if ttl_s is None else ttl_s),
        }
        if consultation_id:
            payload["cid"] = consultation_id
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iss"]},
            )
            role = Role(payload["role"])
            if role == Role.DOCTOR_DAY and payload.get("cid"):
                raise ValueError("a doctor_day token names no consultation")
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token expired") from exc
        except (jwt.InvalidTokenError, KeyError, ValueError) as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        return Claims(role, str(payload["sub"]), payload.get("cid"), int(payload["exp"]))


def json_error(status: int, code: str, message: str, **extra: Any) -> web.HTTPException:
    """An HTTP error whose JSON body says what went wrong, for people and programs alike."""
    body = json.dumps({"error": {"code": code, "message": message, **extra}},
                      ensure_ascii=False)
    if status == 413:  # aiohttp's 413 wants the sizes, which the message already gives
        return web.HTTPRequestEntityTooLarge(0, 0, text=body, content_type="application/json")
    return _ERRORS[status](text=body, content_type="application/json")


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    408: web.HTTPRequestTimeout,
    409: web.HTTPConflict,
    413: web.HTTPRequestEntityTooLarge,
    422: web.HTTPUnprocessableEntity,
    429: web.HTTPTooManyRequests,
    500: web.HTTPInternalServerError,
    503: web.HTTPServiceUnavailable,
}

TOKENS_KEY = web.AppKey("tokens", Tokens)
CLAIMS_KEY = web.RequestKey("claims", Claims)


def bearer_token(request: web.Request, allow_query: bool = False) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip()
    if allow_query:
        return request.query.get("token")
    return None


def authenticate(request: web.Request, allow_query: bool = False) -> Claims:
    token = bearer_token(request, allow_query)
    if not token:
        raise json_error(401, "no_token", "an access token is required")
    try:
        return request.app[TOKENS_KEY].verify(token)
    except TokenError as exc:
        raise json_error(401, "bad_token", str(exc)) from exc


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def requires(*roles: Role, query_token: bool = False) -> Callable[[Handler], Handler]:
    """Decorate a handler: the request must carry a valid token of one of `roles`.

    Call roles are also bound to one consultation: when the route has `{cid}`, it must match.
    """

    allowed = frozenset(roles)

    def wrap(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            claims = authenticate(request, allow_query=query_token)
            if claims.role not in allowed:
                raise json_error(
                    403, "wrong_role", f"role {claims.role} may not use this; needs one of "
                    + ", ".join(sorted(allowed))
                )
            cid = request.match_info.get("cid")
            if claims.role in CALL_ROLES and cid is not None and cid != claims.consultation_id:
                raise json_error(403, "wrong_consultation",
                                 "this token is for another consultation")
            request[CLAIMS_KEY] = claims
            return await handler(request)

        checked.__name__ = handler.__name__
        checked.__doc__ = handler.__doc__
        return checked

    return wrap
