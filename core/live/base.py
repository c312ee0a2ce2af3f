"""The live-state interface: what is happening right now, shared by the nodes.

Nothing here is durable (the SQL database keeps the records). Two implementations behave the
same: in-process for one node, Redis for several. Values are JSON-serialisable dicts and come back
as fresh copies after a JSON round trip in both, so a caller never sees the other backend's quirks.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

Info = dict[str, Any]

PARTICIPANTS = "participants"
"""Key under which consultation() and live_consultations() list the participants by role."""


class LiveStateUnavailable(Exception):
    """The shared store cannot be reached (e.g. Redis is down); raised quickly, never a hang."""


class SubscriptionClosed(Exception):
    """get() on a closed subscription: nothing more will arrive."""


def checked_consultation(info: Info) -> Info:
    if PARTICIPANTS in info:
        raise ValueError(f"{PARTICIPANTS!r} is a reserved key of a consultation")
    return info


def checked_role(role: str) -> str:
    """Roles are a small vocabulary (doctor, guardian...); no ':' keeps Redis keys unambiguous."""
    if not role or ":" in role:
        raise ValueError(f"bad participant role {role!r}")
    return role


_CLOSED = object()


class Subscription:
    """The messages of one channel for one reader, in publish order.

    Backends feed it through `deliver`. Closing wakes a reader blocked in `get` or `async for`, so
    closing never hangs. Use `async with` or call `aclose()`.
    """

    def __init__(self, channel: str, on_close: Callable[[], Awaitable[None]] | None = None):
        self.channel = channel
        self.closed = False
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._on_close = on_close

    def deliver(self, message: Info) -> None:
        if not self.closed:
            self._queue.put_nowait(message)

    async def get(self, timeout: float | None = None) -> Info:
        """The next message; TimeoutError after `timeout` s, SubscriptionClosed once closed."""
        if self.closed:
            raise SubscriptionClosed(self.channel)
        async with asyncio.timeout(timeout):
            item = await self._queue.get()
        if item is _CLOSED:
            raise SubscriptionClosed(self.channel)
        return item

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.put_nowait(_CLOSED)
        if self._on_close is not None:
            await self._on_close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Info:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class LiveState(abc.ABC):
    """Which consultation is live on which node, who is connected, call stats, nodes, fan-out.

    Merges are shallow: put_* overwrites the given top-level fields and keeps the others.
    """

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; raises LiveStateUnavailable if the store cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every open subscription and the connection."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the store answers; False (never an exception) when it does not."""

    # Ownership: a consultation is hosted by exactly one node, pinned with a TTL the owner renews,
    # so that another node can take over when the owner dies.

    @abc.abstractmethod
    async def claim(self, consultation_id: str, node_id: str, ttl_s: float) -> str:
        """Pin the consultation to node_id unless a live claim exists; return the owner.

        The owner claiming again renews its claim. Atomic across nodes.
        """

    @abc.abstractmethod
    async def renew(self, consultation_id: str, node_id: str, ttl_s: float) -> bool:
        """Extend the claim; False (and no change) if node_id is not the owner."""

    @abc.abstractmethod
    async def release(self, consultation_id: str, node_id: str) -> bool:
        """Drop the claim; False (and no change) if node_id is not the owner."""

    @abc.abstractmethod
    async def owner(self, consultation_id: str) -> str | None:
        """The node holding a live claim, or None."""

    # Live consultations and their participants.

    @abc.abstractmethod
    async def put_consultation(self, consultation_id: str, info: Info) -> None:
        """Add or merge fields (state, node, started_at...). `participants` is a reserved key."""

    @abc.abstractmethod
    async def drop_consultation(self, consultation_id: str) -> None:
        """Remove the consultation with its participants. The claim is separate: release() it."""

    @abc.abstractmethod
    async def consultation(self, consultation_id: str) -> Info | None:
        """Its fields plus `participants` keyed by role, or None if it is not live."""

    @abc.abstractmethod
    async def live_consultations(self) -> dict[str, Info]:
        """Every live consultation, each as consultation() returns it."""

    @abc.abstractmethod
    async def put_participant(self, consultation_id: str, role: str, info: Info) -> bool:
        """Add or merge a participant's fields (status, ice, stats...).

        Ignored, returning False, when the consultation is not live: a late stats update must not
        bring an ended consultation back.
        """

    @abc.abstractmethod
    async def drop_participant(self, consultation_id: str, role: str) -> None:
        """Remove one participant."""

    # Fan-out: at-most-once, to whoever is subscribed at the time (like Redis pub/sub).

    @abc.abstractmethod
    async def publish(self, channel: str, message: Info) -> None:
        """Send to every current subscriber of the channel."""

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> Subscription:
        """A subscription that receives every message published after this returns."""

    # Nodes report themselves alive (load, draining...) and vanish when they stop reporting.

    @abc.abstractmethod
    async def heartbeat(self, node_id: str, info: Info, ttl_s: float) -> None:
        """Replace the node's info and keep it listed for ttl_s seconds."""

    @abc.abstractmethod
    async def nodes(self) -> dict[str, Info]:
        """The nodes whose last heartbeat has not expired."""
