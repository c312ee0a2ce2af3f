"""Signed, expiring access tokens and the role checks every route and the WebSocket apply.

A token names who (subject), in which capacity (role) and, for the two call roles, for which
consultation. Nothing is trusted from the client beyond what the signature covers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from aiohttp import web

from core.clock import Clock

ALGORITHM = "HS256"
ISSUER = "teleconsult"


class Role(StrEnum):
    DOCTOR = "doctor"
    GUARDIAN = "guardian"
    AUDITOR = "auditor"
    OPS = "ops"
    ADMIN = "admin"
    REGULATOR = "regulator"  # the supervision platform: export and report only (least data)
    # A doctor's working day: their own worklist (and adverse events on their own
    # consultations), never a call. Joining one of their own consultations from it mints a
    # per-consultation DOCTOR token (server/worklist_api.py).
    DOCTOR_DAY = "doctor_day"
    QUALITY = "quality"  # staff who handle complaints and adverse events (with admin)
    # The guardian's questions and complaints of one consultation, after the call link has
    # expired: read them with the answers, add one; nothing else (server/quality/feedback_token.py).
    GUARDIAN_FEEDBACK = "guardian_feedback"


CALL_ROLES = frozenset({Role.DOCTOR, Role.GUARDIAN})
# Roles whose token names one consultation, and opens a route's `{cid}` only when it is that one.
BOUND_ROLES = CALL_ROLES | {Role.GUARDIAN_FEEDBACK}


@dataclass(frozen=True)
class Claims:
    role: Role
    subject: str
    consultation_id: str | None
    expires_at: int


class TokenError(Exception):
    """A token that cannot be used: missing, malformed, badly signed or expired."""


class Tokens:
    """Issues and checks tokens against `clock`: the wall clock, or a test's fixed instant (so a
    test can stand hours or days later without waiting). Its own clock, not the date rules' one:
    a test that fixes the day of a rule does not expire every token."""

    def __init__(self, secret: str, ttl_s: int, clock: Clock | None = None) -> None:
        if len(secret) < 32:
            raise ValueError("TC_TOKEN_SECRET must be at least 32 characters")
        self._secret = secret
        self._ttl_s = ttl_s
        self.clock = clock or Clock()

    def now(self) -> int:
        """Unix seconds, by this issuer's clock."""
        return int(self.clock.now().timestamp())

    def issue(
        self,
        role: Role,
        subject: str,
        consultation_id: str | None = None,
        ttl_s: int | None = None,
    ) -> str:
        if role in BOUND_ROLES and not consultation_id:
            raise ValueError(f"a {role} token must name its consultation")
        if role == Role.DOCTOR_DAY and consultation_id:
            raise ValueError("a doctor_day token names no consultation (it opens the worklist)")
        now = self.now()
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
                # Times are checked below, against this issuer's clock.
                options={"require": ["exp", "sub", "iss"], "verify_exp": False,
                         "verify_iat": False},
            )
            self._check_times(payload)
            role = Role(payload["role"])
            if role == Role.DOCTOR_DAY and payload.get("cid"):
                raise ValueError("a doctor_day token names no consultation")
            if role in BOUND_ROLES and not payload.get("cid"):
                raise ValueError(f"a {role} token must name its consultation")
        except (jwt.InvalidTokenError, KeyError, ValueError) as exc:
            raise TokenError(f"invalid token: {exc}") from exc
        return Claims(role, str(payload["sub"]), payload.get("cid"), int(payload["exp"]))


    def _check_times(self, payload: dict[str, Any]) -> None:
        """What PyJWT checks of `exp` and `iat` (integers; expired at `exp`; not issued in the
        future), by this issuer's clock."""
        exp, iat = payload["exp"], payload.get("iat")
        for name, value in (("exp", exp), ("iat", iat)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"{name} must be an integer")
        now = self.now()
        if exp <= now:
            raise TokenError("token expired")
        if iat is not None and iat > now:
            raise ValueError("the token is not yet valid (iat)")


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

    Bound roles (the call's, the guardian's feedback) name one consultation: when the route has
    `{cid}`, it must be that one.
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
            if claims.role in BOUND_ROLES and cid is not None and cid != claims.consultation_id:
                raise json_error(403, "wrong_consultation",
                                 "this token is for another consultation")
            request[CLAIMS_KEY] = claims
            return await handler(request)

        checked.__name__ = handler.__name__
        checked.__doc__ = handler.__doc__
        return checked

    return wrap
