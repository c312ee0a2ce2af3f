"""Time-limited TURN credentials per participant: the TURN REST API scheme that coturn checks with
`use-auth-secret` / `static-auth-secret`.

The node and the TURN server share one secret. At each join the node mints, for that participant
only, the username `<expiry unix time>:<user>` and the credential base64(HMAC-SHA1(secret,
username)); coturn recomputes the HMAC and refuses the username once its expiry has passed. So no
TURN password is ever static in a page, and a credential that leaks stops working by itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

TURN_SCHEMES = ("turn:", "turns:")


@dataclass(frozen=True)
class TurnConfig:
    """TC_TURN_URLS, TC_TURN_SECRET, TC_TURN_TTL (core/config/ reads them)."""

    urls: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)
    # coturn checks the expiry when an allocation is made (one made in time lives on), but a
    # browser allocates again with the same credential during the call: an ICE restart, a network
    # change, a TURN/TCP connection that dropped. So it must outlast the longest call, not just the
    # join: 4 h, as long as a join link (TC_TOKEN_TTL) is valid.
    ttl_s: int = 4 * 3600

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def checked(self) -> TurnConfig:
        for url in self.urls:
            if not url.startswith(TURN_SCHEMES):
                raise ValueError(f"TC_TURN_URLS: {url!r} is not a turn: or turns: URL")
        if self.urls and not self.secret:
            raise ValueError("TC_TURN_URLS is set but TC_TURN_SECRET is not: the node cannot "
                             "mint TURN credentials (coturn's static-auth-secret)")
        if self.ttl_s <= 0:
            raise ValueError(f"TC_TURN_TTL={self.ttl_s}: must be positive")
        return self

    def ice_servers(self, user: str, now: float) -> list[dict[str, Any]]:
        """The RTCIceServer entry for one participant (none when TURN is not configured)."""
        if not self.enabled:
            return []
        username, credential = mint(self.secret, user, int(now) + self.ttl_s)
        return [{"urls": list(self.urls), "username": username, "credential": credential}]


def mint(secret: str, user: str, expires_at: int) -> tuple[str, str]:
    """(username, credential) valid until `expires_at` (unix seconds) for a server with `secret`."""
    username = f"{expires_at}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")
