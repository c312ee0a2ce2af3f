"""The rooms this node hosts, keyed by consultation id."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from core import metrics
from core.auth import Role
from core.context import NodeContext
from core.lifecycle import State, Transition
from core.live import LiveStateUnavailable

from .protocol import ParticipantStatus
from .room import Room

log = logging.getLogger(__name__)


class Rooms:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self._rooms: dict[str, Room] = {}
        # Called when this node starts hosting a consultation that is already under way (after
        # a failover): the recorder and the identity re-checks resume on the new node.
        self.on_resumed: list[Callable[[Room, State], Awaitable[None]]] = []
        # Called after a participant's `joined` (first join or rejoin): a service re-sends what
        # that participant's page must show (the doctor's verification step, say).
        self.on_joined: list[Callable[[Room, Role], Awaitable[None]]] = []
        # Called after a room closed because every participant left while the consultation is
        # not over (issue 17): what a service keeps for that room (a presence monitor) must end
        # with it; a later join opens a new room. At the consultation's end the lifecycle's
        # listeners do this instead.
        self.on_emptied: list[Callable[[Room], Awaitable[None]]] = []
        self._lock = asyncio.Lock()
        for role in (Role.DOCTOR, Role.GUARDIAN):  # read at each scrape, never out of date
            metrics.PARTICIPANTS.labels(str(role)).set_function(
                lambda role=role: self.participants(role))

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, consultation_id: str) -> Room | None:
        return self._rooms.get(consultation_id)

    def ids(self) -> list[str]:
        return list(self._rooms)

    async def open(self, consultation_id: str, previous_node: str | None = None) -> Room:
        """The room for a consultation this node has claimed (see core.cluster)."""
        async with self._lock:
            room = self._rooms.get(consultation_id)
            if room is None:
                ctx = self.ctx
                state = await ctx.lifecycle.state(consultation_id)
                await ctx.live.put_consultation(consultation_id, {
                    "state": str(state), "node": ctx.settings.node_id, "lost": False})
                if previous_node:
                    await ctx.events.append(consultation_id, "consultation.rehomed", "system", {
                        "from": previous_node, "to": ctx.settings.node_id, "state": str(state)})
                room = self._rooms[consultation_id] = Room(consultation_id, ctx, self)
                metrics.LIVE_CONSULTATIONS.set(len(self._rooms))
                if state == State.ACTIVE:
                    for resume in self.on_resumed:
                        await resume(room, state)
            return room

    async def discard(self, room: Room) -> None:
        if self._rooms.get(room.consultation_id) is room:
            del self._rooms[room.consultation_id]
            metrics.LIVE_CONSULTATIONS.set(len(self._rooms))
            try:
                await self.ctx.live.drop_consultation(room.consultation_id)
                await self.ctx.live.release(room.consultation_id, self.ctx.settings.node_id)
            except LiveStateUnavailable:
                metrics.LIVE_STATE_ERRORS.inc()

    async def republish(self, consultation_id: str) -> None:
        """Write a hosted consultation back into a live state that lost it."""
        room = self._rooms.get(consultation_id)
        if room is None:
            return
        state = await self.ctx.lifecycle.state(consultation_id)
        await self.ctx.live.put_consultation(consultation_id, {
            "state": str(state), "node": self.ctx.settings.node_id, "lost": False})
        for p in room.participants.values():
            await self.ctx.live.put_participant(consultation_id, str(p.role), p.public())

    async def emptied(self, room: Room) -> None:
        for hook in self.on_emptied:
            try:
                await hook(room)
            except Exception:  # the others still run; the participant's leave still succeeds
                log.exception("a hook on the emptied room of %s failed", room.consultation_id)

    def participants(self, role: str) -> int:
        return sum(room.participants[role].status == ParticipantStatus.CONNECTED  # type: ignore[index]
                   for room in self._rooms.values())

    async def on_transition(self, change: Transition) -> None:
        room = self._rooms.get(change.consultation_id)
        if room is not None:
            await room.on_transition(change)

    async def close_all(self) -> None:
        await asyncio.gather(*(room.close() for room in list(self._rooms.values())))
