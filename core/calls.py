"""What a feature sees of a live call: the room, its participants' encoded media, their pages.

Identity's checks and the recorder work on calls the signaling layer hosts; they depend on these
few members only, so they stand on the base layer, never on signaling's internals.
signaling.room.Room and signaling.media.MediaSource are what the node passes for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import av

from core.auth import Role


class Subscription(Protocol):
    """One subscriber's queue of encoded packets from a feed."""

    times: tuple[float | None, float]  # when the last packet got arrived and was published
    upstream: int  # which upstream (a participant's connection) fed it

    async def get(self) -> av.Packet: ...

    def close(self) -> None: ...


class MediaFeed(Protocol):
    """A participant's encoded audio or video as it reaches the node."""

    label: str
    held: bool  # relaying to the other participant paused (subscribers still get it)

    def subscribe(self, maxsize: int = 64) -> Subscription: ...

    def request_keyframe(self) -> None: ...

    def sender_time(self, pts: int, upstream: int) -> float | None: ...


class CallParticipant(Protocol):
    @property
    def sources(self) -> Mapping[str, MediaFeed]: ...  # "audio", "video"

    @property
    def status(self) -> str: ...

    @property
    def ice(self) -> str: ...


class CallRoom(Protocol):
    """One consultation's call on this node."""

    @property
    def consultation_id(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def participants(self) -> Mapping[Role, CallParticipant]: ...

    async def send(self, role: Role, message: dict[str, Any]) -> None: ...

    async def broadcast(self, message: dict[str, Any]) -> None: ...


# -- what a feature tells the pages through `send` and `broadcast` ----------------------------
# Node → client messages (signaling/PROTOCOL.md, models in signaling/server_messages.py), built
# here as the only place that writes their type and field names; signaling/protocol.py builds
# the node's other messages.

Out = dict[str, Any]


def notice(code: str, zh: str, en: str) -> Out:
    return {"type": "notice", "code": code, "zh": zh, "en": en}


def presence(guardian: str, zh: str, en: str, faces: int | None = None,
             at: str | None = None) -> Out:
    """A change carries `faces` and `at`; the state re-sent to a (re)joining page does not."""
    msg: Out = {"type": "presence", "guardian": guardian}
    if faces is not None:
        msg["faces"] = faces
    if at is not None:
        msg["at"] = at
    msg["zh"], msg["en"] = zh, en
    return msg


def verify(step: str, zh: str, en: str, **fields: Any) -> Out:
    """A verification step (doctor only); its other fields depend on the step."""
    return {"type": "verify", "step": step, "zh": zh, "en": en, **fields}

