"""The identity service of one node: the face pool, protected storage, one verification per
consultation being verified, continuous checks for each active one, and the "identity" gate.

It follows the lifecycle (a listener): entering `verifying` starts a verification, leaving it
stops it (a doctor who leaves and comes back is verified again), `active` starts the re-checks,
a final state stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from core import metrics, referral
from core.alerts import Alert, publish_alert
from core.auth import Role
from core.calls import CallRoom
from core.config.identity import IdentityConfig
from core.context import NodeContext
from core.lifecycle import Gate, State, Transition
from core.live import LiveStateUnavailable
from core.logs import LogSettings
from core.store import Database, EventLog, records
from core.store.faces import FaceEnrollment

from ..faces.pool import FacePool
from ..faces.storage import protected_store
from .assurance import Assurance
from .verifier import Verification

log = logging.getLogger(__name__)


class IdentityService:
    """The host of its children (host.py's CheckHost): they use and report through it."""

    def __init__(self, config: IdentityConfig, ctx: NodeContext,
                 room_of: Callable[[str], CallRoom | None]) -> None:
        self.config = config
        self.ctx = ctx
        self.room_of = room_of
        settings = ctx.settings
        self.pool = FacePool(config.workers,
                             LogSettings(settings.log_level, settings.node_id, settings.json_logs),
                             config.detector)
        self.store = protected_store(settings.data_dir / "identity", settings.store)
        self.verifications: dict[str, Verification] = {}
        self.assurances: dict[str, Assurance] = {}
        self._warm: asyncio.Task[None] | None = None
        self._started = asyncio.Condition()

    def start(self) -> None:
        """Load the face models in the background if checks are on (server/node.py hooks the
        service into the lifecycle)."""
        if self.config.required:
            self._warm = asyncio.create_task(self.pool.warm(), name="face-pool-warm")
        else:
            log.warning("TC_IDENTITY_REQUIRED=0: doctors are NOT verified before accepting")

    async def close(self) -> None:
        for item in [*self.verifications.values(), *self.assurances.values()]:
            await item.stop()
        self.verifications.clear()
        self.assurances.clear()
        if self._warm is not None:
            self._warm.cancel()
            with contextlib.suppress(BaseException):
                await self._warm
        await asyncio.to_thread(self.pool.close)

    async def assurance(self, cid: str, timeout: float) -> Assurance:
        """The continuous checks of an active consultation, once they have started."""
        async with asyncio.timeout(timeout), self._started:
            await self._started.wait_for(lambda: cid in self.assurances)
        return self.assurances[cid]

    @property
    def events(self) -> EventLog:
        return self.ctx.events

    @property
    def db(self) -> Database:
        return self.ctx.db

    async def enrollment(self, doctor_id: str) -> FaceEnrollment | None:
        async with self.ctx.db.session() as session:
            return await session.get(FaceEnrollment, doctor_id)

    async def status(self, cid: str, status: str) -> None:
        """The doctor's identity status in the live state, where the ops view reads it."""
        try:
            await self.ctx.live.put_consultation(cid, {"identity": status})
        except LiveStateUnavailable:
            metrics.LIVE_STATE_ERRORS.inc()

    async def alert(self, cid: str, kind: str, text: str, data: dict[str, Any]) -> None:
        """An ops alert on every ops page (core/alerts.py)."""
        await publish_alert(self.ctx.live, Alert(kind, text, self.ctx.settings.node_id, cid, data))

    async def end(self, cid: str, reason: str, note: str) -> None:
        """The same termination-and-referral flow as the doctor's own, with a system reason."""
        await referral.refer_to_own_hospital(self.ctx, cid, reason, note)

    def gate(self) -> Gate:
        async def identity(cid: str) -> str | None:
            verification = self.verifications.get(cid)
            if verification is None:
                return "the doctor's identity has not been verified"
            return verification.refusal()

        return identity

    async def on_transition(self, change: Transition) -> None:
        cid = change.consultation_id
        if change.previous == State.VERIFYING or change.state.final:
            verification = self.verifications.get(cid)
            if verification is not None and change.state != State.ACTIVE:
                del self.verifications[cid]
            if verification is not None:
                await verification.stop()
        if change.state.final:
            assurance = self.assurances.pop(cid, None)
            if assurance is not None:
                await assurance.stop()
        if not self.config.required:
            return
        room = self.room_of(cid)
        if room is None:
            return
        if change.state == State.VERIFYING:
            consultation = await records.get_consultation(self.ctx.db, cid)
            if consultation is not None:
                self.verifications[cid] = Verification(self, room, consultation.doctor_id)
        elif change.state == State.ACTIVE:
            await self._assure(room)

    async def rejoined(self, room: CallRoom, role: Role) -> None:
        """A doctor's page that (re)joins mid-verification learns where it stands."""
        verification = self.verifications.get(room.consultation_id)
        if role == Role.DOCTOR and verification is not None and verification.said is not None:
            await room.send(Role.DOCTOR, verification.said)

    async def resume(self, room: CallRoom, state: State) -> None:
        """A consultation re-homed here while active (failover): the re-checks go on here."""
        if self.config.required and state == State.ACTIVE and room.consultation_id not in \
                self.assurances:
            await self._assure(room)

    async def _assure(self, room: CallRoom) -> None:
        """Start the periodic re-checks of the doctor's face for an active consultation."""
        cid = room.consultation_id
        consultation = await records.get_consultation(self.ctx.db, cid)
        enrollment = (await self.enrollment(consultation.doctor_id)
                      if consultation is not None else None)
        if consultation is not None and enrollment is not None:
            self.assurances[cid] = Assurance(self, room, consultation.doctor_id,
                                             list(enrollment.encoding))
            async with self._started:
                self._started.notify_all()
