"""Consultations left under way by a node that died, that nobody came back to.

A call in progress is `verifying` or `active`; normally the last participant leaving moves it on
(`waiting` or `aborted`). A node that is killed cannot do that. If a participant rejoins (this
node after a restart, or another node after a failover) the call goes on; if nobody does within
the rejoin grace period, the consultation would stay "under way" for ever: its record, the
regulator's export and the recording's retention date (set when it ends) would all be wrong.

So every node looks, every `rejoin_grace_s`, for consultations under way that no live node hosts
(no claim in the live state) and, after a whole grace period so unhosted, ends them as the room
would have: `active` → `aborted`, `verifying` → `waiting`. The transition is a compare-and-set,
so two nodes sweeping at once cannot both act. While the live state is away nothing is touched:
ownerless then means unknown, not abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from sqlalchemy import select

from core.context import NodeContext
from core.lifecycle import State, TransitionError
from core.live import LiveStateUnavailable
from core.store import Consultation

log = logging.getLogger(__name__)

UNDER_WAY = {State.VERIFYING: State.WAITING, State.ACTIVE: State.ABORTED}
REASON = "the node hosting it stopped and nobody rejoined within the grace period"


class OrphanSweeper:
    def __init__(self, ctx: NodeContext, hosted: Callable[[str], object | None]) -> None:
        self.ctx = ctx
        self.hosted = hosted  # the room this node hosts for a consultation, if any
        self._unhosted_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="orphan-sweep")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.ctx.settings.rejoin_grace_s)  # the cadence of the sweep
            try:
                await self.sweep()
            except LiveStateUnavailable:
                self._unhosted_since.clear()  # unknown is not abandoned: start over
            except Exception:
                log.exception("sweeping abandoned consultations failed; next round later")

    async def sweep(self) -> list[str]:
        """One round; returns the consultations it ended."""
        ctx, now = self.ctx, time.monotonic()
        async with ctx.db.session() as session:
            under_way = list(await session.scalars(
                select(Consultation.id).where(Consultation.state.in_([str(s) for s in UNDER_WAY]))))
        unhosted = set()
        for cid in under_way:
            if self.hosted(cid) is None and await ctx.live.owner(cid) is None:
                unhosted.add(cid)
        self._unhosted_since = {cid: self._unhosted_since.get(cid, now) for cid in unhosted}
        ended = []
        for cid, since in list(self._unhosted_since.items()):
            if now - since < ctx.settings.rejoin_grace_s:
                continue
            state = await ctx.lifecycle.state(cid)
            if (state not in UNDER_WAY or self.hosted(cid) is not None
                    or await ctx.live.owner(cid) is not None):  # someone came back meanwhile
                continue
            try:
                await ctx.lifecycle.transition(cid, UNDER_WAY[state], "system", REASON,
                                               expected=state)
            except TransitionError:
                continue  # a participant came back, or another node got there first
            del self._unhosted_since[cid]
            ended.append(cid)
        return ended
