"""Short-lived playback tokens, because a <video> element cannot send an Authorization header.

An auditor's page asks (with its bearer token) for a URL to one segment; the URL carries a token
valid for that one segment, for a few minutes, naming who asked and why (play or download). Its
audience differs from access tokens', so it can never stand in for one. Both the issue and the
first use of each token are events in the consultation's log.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

AUDIENCE = "recording-playback"
TTL_S = 600


@dataclass(frozen=True)
class Grant:
    segment_id: str
    consultation_id: str
    actor: str
    purpose: str
    token_id: str


class PlaybackTokens:
    def __init__(self, secret: str, ttl_s: int = TTL_S) -> None:
        self._secret = secret
        self.ttl_s = ttl_s
        self._used: dict[str, float] = {}

    def issue(self, segment_id: str, consultation_id: str, actor: str, purpose: str) -> str:
        now = int(time.time())
        return jwt.encode({"aud": AUDIENCE, "seg": segment_id, "cid": consultation_id,
                           "sub": actor, "purpose": purpose, "jti": secrets.token_urlsafe(8),
                           "iat": now, "exp": now + self.ttl_s}, self._secret, "HS256")

    def verify(self, token: str) -> Grant:
        claims = jwt.decode(token, self._secret, algorithms=["HS256"], audience=AUDIENCE,
                            options={"require": ["exp", "seg", "jti"]})
        return Grant(claims["seg"], claims["cid"], claims["sub"], claims["purpose"],
                     claims["jti"])

    def first_use(self, grant: Grant) -> bool:
        """True the first time a token is used (a player sends many Range requests)."""
        now = time.monotonic()
        if len(self._used) > 10_000:
            self._used = {k: t for k, t in self._used.items() if now - t < self.ttl_s}
        if grant.token_id in self._used:
            return False
        self._used[grant.token_id] = now
        return True
