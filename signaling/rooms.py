"""The rooms this node hosts, keyed by consultation id."""

from __future__ import annotations

import asyncio

from server.lifecycle import Transition

from .context import NodeContext
from .room import Room

CLAIM_TTL_S = 30.0


class Rooms:
    def __init__(self) -> None:
        self.ctx: NodeContext | None = None
        self._rooms: dict[str, Room] = {}
        self._lock = asyncio.Lock()

    def bind(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, consultation_id: str) -> Room | None:
        return self._rooms.get(consultation_id)

    async def open(self, consultation_id: str) -> Room:
        assert self.ctx is not None
        async with self._lock:
            room = self._rooms.get(consultation_id)
            if room is None:
                ctx = self.ctx
                await ctx.live.claim(consultation_id, ctx.settings.node_id, CLAIM_TTL_S)
                state = await ctx.lifecycle.state(consultation_id)
                await ctx.live.put_consultation(
                    consultation_id, {"state": str(state), "node": ctx.settings.node_id}
                )
                room = self._rooms[consultation_id] = Room(consultation_id, ctx)
            return room

    async def discard(self, room: Room) -> None:
        assert self.ctx is not None
        if self._rooms.get(room.consultation_id) is room:
            del self._rooms[room.consultation_id]
            await self.ctx.live.drop_consultation(room.consultation_id)
            await self.ctx.live.release(room.consultation_id, self.ctx.settings.node_id)

    async def on_transition(self, change: Transition) -> None:
        room = self._rooms.get(change.consultation_id)
        if room is not None:
            await room.on_transition(change)

    async def close_all(self) -> None:
        await asyncio.gather(*(room.close() for room in list(self._rooms.values())))
