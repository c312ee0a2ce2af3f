"""Several nodes sharing one Redis: heartbeats, where each consultation lives, failover.

With in-process live state this is a cluster of one and every question has a trivial answer.
With Redis:
- every node writes a heartbeat (a key with a TTL) with its URL and load;
- a consultation is pinned to one node by a claim (a key with the same TTL) that its host renews
  with each heartbeat; the first host is the least loaded live node;
- a client that reaches another node is told where to go (`redirect`);
- when a node dies its heartbeat and claims expire: the others mark its consultations lost (an
  event each), and the first node a participant rejoins through claims and re-homes it;
- transitions made on one node (ops ending a call, say) reach the hosting node through pub/sub.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from core import metrics
from core.alerts import Alert, publish_alert
from core.config import Settings
from core.lifecycle import State, Transition
from core.live import LiveState, LiveStateUnavailable
from core.store import EventLog

log = logging.getLogger(__name__)

TRANSITIONS = "transitions"


@dataclass(frozen=True)
class Home:
    """Where a consultation is to be hosted, from this node's point of view."""

    here: bool
    url: str | None = None
    retry_after_s: float | None = None
    previous_node: str | None = None


class Cluster:
    def __init__(self, settings: Settings, live: LiveState, events: EventLog,
                 hosted: Callable[[], list[str]]) -> None:
        self.settings = settings
        self.me = settings.node_id
        self.live = live
        self.events = events
        self.hosted = hosted  # the consultations this node hosts now
        self.on_remote_transition: list[Callable[[Transition], Awaitable[None]]] = []
        self.on_reclaimed: list[Callable[[str], Awaitable[None]]] = []
        self.draining = False  # hosts what it has, takes nothing new (before a shutdown)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ttl_s(self) -> float:
        return self.settings.node_ttl_s

    async def start(self) -> None:
        await self._beat()
        self._tasks = [asyncio.create_task(self._heartbeats(), name="heartbeats"),
                       asyncio.create_task(self._follow_transitions(), name="transitions")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- placement ----------------------------------------------------------------------------

    async def home(self, consultation_id: str) -> Home:
        """Host here, go elsewhere, or wait for a dead host's claim to expire."""
        nodes = await self.live.nodes()
        previous = (await self.live.consultation(consultation_id) or {}).get("node")
        owner = await self.live.owner(consultation_id)
        if owner is None:
            target = self._least_loaded(nodes)
            if target != self.me:
                return Home(False, url=nodes[target]["url"])
        owner = await self.live.claim(consultation_id, self.me, self.ttl_s)
        if owner == self.me:
            return Home(True, previous_node=previous if previous != self.me else None)
        if owner in nodes:
            return Home(False, url=nodes[owner]["url"])
        return Home(False, retry_after_s=self.settings.heartbeat_s)

    def _least_loaded(self, nodes: dict[str, dict[str, Any]]) -> str:
        # Ties go to this node: no redirect when it makes no difference.
        load = {name: (info.get("rooms", 0), 1, name) for name, info in nodes.items()
                if not info.get("draining")}
        if not self.draining or not load:
            load[self.me] = (len(self.hosted()), 0, self.me)
        return min(load, key=load.__getitem__)

    async def peer_urls(self) -> list[str]:
        nodes = await self.live.nodes()
        return sorted(info["url"] for info in nodes.values() if info.get("url"))

    # -- heartbeats and the failure detector ---------------------------------------------------

    async def _beat(self) -> None:
        await self.live.heartbeat(self.me, {
            "url": self.settings.public_url,
            "rooms": len(self.hosted()),
            "draining": self.draining,
            "cpu": metrics.NODE_CPU._value.get(),  # the gauge's last value
            "at": time.time(),
        }, self.ttl_s)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self._beat()
                for cid in self.hosted():
                    if not await self.live.renew(cid, self.me, self.ttl_s):
                        # Redis lost it (a restart): claim again and tell it what is going on.
                        if await self.live.claim(cid, self.me, self.ttl_s) == self.me:
                            for restore in self.on_reclaimed:
                                await restore(cid)
                await self._mark_lost()
            except LiveStateUnavailable as exc:
                metrics.LIVE_STATE_ERRORS.inc()
                log.warning("live state unavailable, calls go on: %s", exc)
            except Exception:
                # A database error marking a lost node, say. Stopping the heartbeats would have
                # the other nodes take this node's calls while it still hosts them: go on.
                log.exception("heartbeat round failed; next one in %s s", self.settings.heartbeat_s)

    async def _mark_lost(self) -> None:
        nodes = await self.live.nodes()
        for cid, info in (await self.live.live_consultations()).items():
            node = info.get("node")
            if not node or node == self.me or node in nodes or info.get("lost"):
                continue
            # One node records the loss: the claim doubles as a short-lived mutex.
            if await self.live.claim(f"lost:{cid}", self.me, 60) != self.me:
                continue
            await self.live.put_consultation(cid, {"lost": True, "lost_at": time.time()})
            await self.events.append(cid, "node.lost", "system", {
                "node": node, "detected_by": self.me,
                "reason": "heartbeat expired; participants will rejoin through a live node"})
            await publish_alert(self.live, Alert(
                "node.lost", f"节点失联 Node {node} lost; participants rejoin through a live node",
                self.me, cid, {"lost_node": node}))

    # -- transitions made elsewhere ------------------------------------------------------------

    async def publish_transition(self, change: Transition) -> None:
        if change.remote:  # heard from another node: publishing it again would echo forever
            return
        try:
            await self.live.publish(TRANSITIONS, {
                "origin": self.me, "consultation": change.consultation_id,
                "previous": str(change.previous), "state": str(change.state),
                "actor": change.actor, "reason": change.reason})
        except LiveStateUnavailable:
            metrics.LIVE_STATE_ERRORS.inc()

    async def _follow_transitions(self) -> None:
        while True:
            try:
                async with await self.live.subscribe(TRANSITIONS) as sub:
                    async for message in sub:
                        if message.get("origin") == self.me:
                            continue
                        await self._remote_transition(message)
            except LiveStateUnavailable:
                metrics.LIVE_STATE_ERRORS.inc()
                await asyncio.sleep(self.settings.heartbeat_s)
            except Exception:  # this loop must outlive any one bad message or listener
                log.exception("following transitions failed; resubscribing")
                await asyncio.sleep(self.settings.heartbeat_s)

    async def _remote_transition(self, message: dict[str, Any]) -> None:
        try:
            change = Transition(message["consultation"], State(message["previous"]),
                                State(message["state"]), message["actor"],
                                message.get("reason"), remote=True)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("ignoring a malformed transition message %r: %s", message, exc)
            return
        for listener in self.on_remote_transition:
            await listener(change)
