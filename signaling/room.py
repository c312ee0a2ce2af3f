"""One live consultation on this node: its two participants, their peers, media and grace timers.

The room owns the media plumbing (which source feeds which relay) and the connection
bookkeeping (connected / reconnecting / left); the consultation's state itself belongs to the
lifecycle, which the room drives and listens to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from core import metrics
from core.alerts import Alert, publish_alert
from core.auth import Role
from core.context import NodeContext
from core.lifecycle import State, Transition
from core.live import LiveStateUnavailable

from . import protocol
from .background import spawn
from .bandwidth import Link
from .call_stats import (
    NetworkWatch,
    RateMeter,
    bandwidth,
    network,
    poor_network,
    summarise,
)
from .media import MediaSource
from .peer import KINDS, Peer
from .protocol import IceCandidate, ParticipantStatus

log = logging.getLogger(__name__)

OTHER = {Role.DOCTOR: Role.GUARDIAN, Role.GUARDIAN: Role.DOCTOR}


@dataclass
class Participant:
    role: Role
    sources: dict[str, MediaSource]
    subject: str | None = None
    status: ParticipantStatus = ParticipantStatus.ABSENT
    ice: str = "new"
    ws: web.WebSocketResponse | None = None
    peer: Peer | None = None
    grace: asyncio.Task[None] | None = None
    joins: int = 0
    joined_at: float = 0.0
    link: Link = field(default_factory=Link)

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.subject}"

    @property
    def here(self) -> bool:
        """Connected, or lost and within its grace period: its place is kept."""
        return self.status in (ParticipantStatus.CONNECTED, ParticipantStatus.RECONNECTING)

    def public(self) -> dict[str, Any]:
        return protocol.participant_info(self.role, self.status, self.ice)

    def message(self) -> dict[str, Any]:
        """The `participant` message the other side gets of this one."""
        return protocol.participant(self.role, self.status, self.ice)


class RoomHost(Protocol):
    """What a room tells the node's set of rooms (signaling/rooms.py) when it ends."""

    async def discard(self, room: Room) -> None: ...

    async def emptied(self, room: Room) -> None: ...


@dataclass
class Room:
    consultation_id: str
    ctx: NodeContext
    host: RoomHost
    participants: dict[Role, Participant] = field(init=False)
    closed: bool = False
    # Joins under way: until it is `connected` a participant who is joining does not show in the
    # statuses, and the room must not close under it as the last one leaves.
    _arriving: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.participants = {
            role: Participant(role, {k: MediaSource(k, f"{role}/{k}") for k in KINDS})
            for role in (Role.DOCTOR, Role.GUARDIAN)
        }
        self._stats_task: asyncio.Task[None] | None = spawn(self._report_stats(),
                                                            f"stats-{self.consultation_id}")
        metrics.ROOMS_OPEN.inc()

    async def _report_stats(self) -> None:
        # Read every interval, connected or not, so each rate covers one interval (a meter made
        # at its first reading would divide by almost no time: millions of fps).
        meters = {role: {kind: RateMeter() for kind in p.sources}
                  for role, p in self.participants.items()}
        sent_meters = {role: {kind: RateMeter() for kind in KINDS} for role in self.participants}
        watches = {role: NetworkWatch() for role in self.participants}
        while not self.closed:
            await asyncio.sleep(self.ctx.settings.stats_interval_s)
            received = {role: summarise(p.sources, meters[role])
                        for role, p in self.participants.items()}
            for role, p in self.participants.items():
                if p.status != ParticipantStatus.CONNECTED:
                    continue
                try:  # one bad reading must not end the statistics for the rest of the call
                    stats = await self._stats(p, received, sent_meters[role])
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug("stats of %s: %s", p.actor, stats)
                    await self._publish_participant(p, stats=stats)
                    problems = poor_network(stats)
                    change = watches[role].observe(problems)
                    if change is not None:
                        await self._network_changed(p, change, problems)
                except Exception:
                    log.exception("live statistics of %s failed", p.actor)

    async def _stats(self, p: Participant, received: dict[Role, dict[str, Any]],
                     sent_meters: dict[str, RateMeter]) -> dict[str, object]:
        stats: dict[str, object] = dict(received[p.role])
        if p.peer is not None:
            relays = p.peer.relays
            if relays:
                sent = summarise(relays, sent_meters)
                for kind, entry in sent.items():
                    entry["dropped"] = relays[kind].subscription.dropped
                # Held back on purpose (identity pause) is not a poor link.
                held = relays["video"].subscription.source.held
                sent["video"]["source_fps"] = (
                    0.0 if held else received[OTHER[p.role]]["video"]["fps"])
                stats["sent"] = sent
            stats["network"] = await network(p.peer.pc)
        stats["bandwidth"] = bandwidth(p.link)
        return stats

    async def _network_changed(self, p: Participant, change: str, problems: list[str]) -> None:
        await self.ctx.events.append(self.consultation_id, f"network.{change}", p.actor,
                                     {"problems": problems})
        text = (f"{p.role} 网络较差 connection poor: {', '.join(problems)}" if change == "poor"
                else f"{p.role} 网络恢复 connection recovered")
        await publish_alert(self.ctx.live, Alert(
            f"network.{change}", text, self.ctx.settings.node_id, self.consultation_id,
            {"role": str(p.role), "problems": problems}))

    # -- messages ---------------------------------------------------------------------------

    async def send(self, role: Role, message: dict[str, Any]) -> None:
        ws = self.participants[role].ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json(message)

    async def broadcast(self, message: dict[str, Any]) -> None:
        await asyncio.gather(*(self.send(role, message) for role in self.participants))

    async def _set_status(self, p: Participant, status: ParticipantStatus, event: str,
                          **data: Any) -> None:
        p.status = status
        await self.ctx.events.append(self.consultation_id, event, p.actor, data)
        await self.send(OTHER[p.role], p.message())
        await self._publish_participant(p)

    async def _publish_participant(self, p: Participant, **extra: Any) -> None:
        """Best effort: while Redis is away the call goes on; the next update catches up."""
        try:
            await self.ctx.live.put_participant(self.consultation_id, str(p.role),
                                                {**p.public(), **extra})
        except LiveStateUnavailable:
            metrics.LIVE_STATE_ERRORS.inc()

    # -- joining and leaving ----------------------------------------------------------------

    async def join(self, role: Role, subject: str, ws: web.WebSocketResponse,
                   downlink_kbps: int | None = None) -> bool:
        """Attach a (re)connected participant; returns True when this is a rejoin.
        `downlink_kbps`: its page's measure of its downlink, where its media starts."""
        self._arriving += 1
        done = False
        try:
            self.participants[role].link.reported_before_media(downlink_kbps)
            rejoined = await self._join(role, subject, ws)
            done = True
            return rejoined
        finally:
            self._arriving -= 1
            if not done:  # its socket went mid-join (the handler cancelled), or a failure
                spawn(self._join_cut_short(role, ws), "join-cut-short")

    async def _join_cut_short(self, role: Role, ws: web.WebSocketResponse) -> None:
        """The handler never got the room, so no `connection_lost` will come for this socket: a
        participant it made `connected` is lost now (grace period), and an empty room closes."""
        await self.connection_lost(role, ws, "the join did not complete")
        await self._close_if_empty()

    async def _join(self, role: Role, subject: str, ws: web.WebSocketResponse) -> bool:
        p = self.participants[role]
        previous_ws = p.ws
        rejoined = p.joins > 0
        if p.grace is not None:
            p.grace.cancel()
            p.grace = None
        if rejoined and p.status == ParticipantStatus.CONNECTED and previous_ws is not ws:
            # Issue 11: back on a new socket before the node saw the old one go (its address
            # vanished with a network change; or another window): the log still shows the gap.
            await self._set_status(p, ParticipantStatus.RECONNECTING, "participant.lost",
                                   reason="came back on a new connection before the old one "
                                   "was seen to drop (network change, or another window)")
        if rejoined:
            # A page makes a new peer connection after every join: the old one is dead weight,
            # and its late "closed" must not count against the participant who is back.
            await self._close_peer(p)
        p.subject, p.ws = subject, ws
        p.joins += 1
        p.joined_at = time.monotonic()
        if previous_ws is not None and previous_ws is not ws and not previous_ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await previous_ws.send_json(protocol.error(
                    "replaced", "this participant joined from another connection"))
            close_soon(previous_ws, 4001, "replaced")
        await self._set_status(p, ParticipantStatus.CONNECTED, "participant.rejoined"
                               if rejoined else "participant.joined")
        await self._advance_on_join(p)
        return rejoined

    async def _advance_on_join(self, p: Participant) -> None:
        state = await self.ctx.lifecycle.state(self.consultation_id)
        if p.role == Role.GUARDIAN and state == State.SCHEDULED:
            await self.ctx.lifecycle.transition(self.consultation_id, State.WAITING, p.actor,
                                                "patient side joined")
        elif p.role == Role.DOCTOR and state in (State.SCHEDULED, State.WAITING):
            await self.ctx.lifecycle.transition(self.consultation_id, State.VERIFYING, p.actor,
                                                "doctor joined")

    async def connection_lost(self, role: Role, ws: web.WebSocketResponse, why: str) -> None:
        """The participant's socket or ICE went away: keep its place for the grace period."""
        p = self.participants[role]
        if self.closed or p.ws is not ws or p.status != ParticipantStatus.CONNECTED:
            return
        p.ws = None
        await self._lose(p, why)

    async def _lose(self, p: Participant, why: str) -> None:
        # The timer first: should the audit write fail, the place is still freed in time.
        p.grace = asyncio.create_task(self._grace_expired(p))
        await self._set_status(p, ParticipantStatus.RECONNECTING, "participant.lost", reason=why,
                               grace_s=self.ctx.settings.rejoin_grace_s)

    async def _grace_expired(self, p: Participant) -> None:
        await asyncio.sleep(self.ctx.settings.rejoin_grace_s)
        p.grace = None
        await self.leave(p.role, "did not return within the grace period")

    async def leave(self, role: Role, reason: str) -> None:
        p = self.participants[role]
        if not p.here:
            return
        if p.grace is not None:
            p.grace.cancel()
            p.grace = None
        await self._close_peer(p)
        ws, p.ws = p.ws, None
        await self._set_status(p, ParticipantStatus.LEFT, "participant.left", reason=reason)
        close_soon(ws, 1000, "left")
        await self._after_departure(p)

    async def _after_departure(self, p: Participant) -> None:
        if self.closed:
            return
        state = await self.ctx.lifecycle.state(self.consultation_id)
        others_here = any(q.here for q in self.participants.values())
        if state == State.ACTIVE and not others_here:
            await self.ctx.lifecycle.transition(self.consultation_id, State.ABORTED, "system",
                                                "every participant left")
        elif state == State.VERIFYING and p.role == Role.DOCTOR:
            await self.ctx.lifecycle.transition(self.consultation_id, State.WAITING, "system",
                                                "doctor left before accepting")
        await self._close_if_empty()

    async def _close_if_empty(self) -> None:
        """Issue 17: a room everyone has left (or whose last grace period ran out) is closed, not
        only forgotten: its statistics task and peers would otherwise live on. A consultation
        that is not over yet gets a new room at the next join (`rejoined: false`)."""
        if self.closed or self._arriving or any(q.here for q in self.participants.values()):
            return
        await self.close()
        await self.host.emptied(self)

    # -- media ------------------------------------------------------------------------------

    async def offer(self, role: Role, sdp: str) -> str:
        p = self.participants[role]
        if p.peer is not None and p.status == ParticipantStatus.CONNECTED and p.ws is not None:
            # Issue 11 (network change): the page found its media path dead (a new address, a
            # network switch) before the node's consent checks did; aiortc has no ICE restart,
            # so it makes a new peer connection. The log shows the gap: lost, then restored.
            await self._lose(p, "media renegotiated by the participant (network change)")
        await self._close_peer(p)
        other = self.participants[OTHER[role]]
        peer = Peer(self.ctx.settings.ice_servers, p.sources, other.sources,
                    lambda state: self._on_ice(p, peer, state), (p.link, other.link),
                    self.ctx.settings.video_max_kbps * 1000)
        p.peer = peer
        try:
            answer = await peer.answer(sdp)
        except Exception:
            p.peer = None
            await peer.close()
            raise
        await self.ctx.events.append(self.consultation_id, "media.offer", p.actor,
                                     {"peer": p.joins})
        return answer

    def _on_ice(self, p: Participant, peer: Peer, state: str) -> None:
        if p.peer is not peer or self.closed:
            return
        p.ice = state
        spawn(self._report_ice(p, peer, state), "report-ice")

    async def _report_ice(self, p: Participant, peer: Peer, state: str) -> None:
        if state == "connected" and p.joined_at:
            metrics.JOIN_LATENCY.observe(time.monotonic() - p.joined_at)
            p.joined_at = 0.0
        if state in ("connected", "failed", "closed"):
            await self.ctx.events.append(self.consultation_id, f"media.{state}", p.actor, {})
        await self.send(OTHER[p.role], p.message())
        await self._publish_participant(p)
        if p.peer is not peer:  # replaced while we were reporting (a rejoin, a new offer)
            return
        if state in ("failed", "closed"):
            # ICE failed (consent checks unanswered) or the far end closed its peer connection
            # while its socket stayed: the same grace period as a dropped socket.
            await self._media_lost(p, f"media connection {state}")
        elif (state == "connected" and p.status == ParticipantStatus.RECONNECTING
              and p.ws is not None):
            await self._media_restored(p)

    async def _media_lost(self, p: Participant, why: str) -> None:
        if p.status != ParticipantStatus.CONNECTED:
            return
        if p.ws is not None:
            await self.send(p.role, protocol.notice("ice_failed", "网络连接中断，正在重新连接",
                                                    "Media connection lost, reconnecting"))
        await self._lose(p, why)

    async def _media_restored(self, p: Participant) -> None:
        """A new peer connection from a participant whose socket never went away."""
        if p.grace is not None:
            p.grace.cancel()
            p.grace = None
        await self._set_status(p, ParticipantStatus.CONNECTED, "participant.media_restored")

    async def add_candidate(self, role: Role, candidate: IceCandidate | None) -> None:
        peer = self.participants[role].peer
        if peer is None:
            raise LookupError("send an offer before candidates")
        await peer.add_candidate(candidate)

    async def _close_peer(self, p: Participant) -> None:
        peer, p.peer = p.peer, None
        if peer is not None:
            await peer.close()

    # -- the end ----------------------------------------------------------------------------

    async def on_transition(self, change: Transition) -> None:
        try:
            await self.ctx.live.put_consultation(self.consultation_id,
                                                 {"state": str(change.state)})
        except LiveStateUnavailable:
            metrics.LIVE_STATE_ERRORS.inc()
        await self.broadcast(protocol.state(change.state, change.previous, change.reason))
        if change.state.final:
            await self.close()

    async def close(self) -> None:
        """Stop all media at once and close both sockets (the consultation is over)."""
        if self.closed:
            return
        self.closed = True
        metrics.ROOMS_OPEN.dec()
        # Let go of the task as it is cancelled: once done it keeps its CancelledError, whose
        # traceback holds the task's frame and so this room, a cycle only a full collection
        # would free (the room, its sources, meters and participants' sockets with it).
        stats, self._stats_task = self._stats_task, None
        if stats is not None:
            stats.cancel()
        await self.host.discard(self)
        for p in self.participants.values():
            if p.grace is not None:
                p.grace.cancel()
        await asyncio.gather(*(self._close_peer(p) for p in self.participants.values()))
        for p in self.participants.values():
            ws, p.ws = p.ws, None
            close_soon(ws, 1000, "consultation over")


def close_soon(ws: web.WebSocketResponse | None, code: int, why: str) -> None:
    """Close a socket without awaiting the handshake: this may run inside that very socket's
    message handler, where an awaited close would wait on itself."""
    if ws is not None and not ws.closed:
        spawn(ws.close(code=code, message=why.encode()), "ws-close")
