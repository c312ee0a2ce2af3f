"""The doctor's `prescribe` message (issue 4): an online prescription for a child under 6 needs a
guardian and a doctor present (管理办法 §19, pilot letter §3).

"Present" is what the node itself observes, never what a page claims: the guardian is `present`
in the presence state machine (a face matching an enrolled guardian seen recently, with
hysteresis), and the doctor's connection and media are up in an active consultation. The issued
prescription is a `prescription.issued` event in the consultation's hash-chained log, with the
presence evidence it was issued under; a refusal is the handler's `signaling.refused` event.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.auth import Role
from core.config.presence import PresenceConfig
from core.context import NodeContext
from core.lifecycle import State
from core.store.models import new_id
from identity.guardian.guardians import consultation_ages
from signaling import protocol
from signaling.protocol import ParticipantStatus, Prescribe, ProtocolError

if TYPE_CHECKING:
    from identity.guardian.presence import PresenceService
    from signaling.room import Room


class Prescriber:
    """The handler's `prescribe` (signaling.handler.Prescriber), judged by what the node's
    presence service (None where presence is off) observes."""

    def __init__(self, ctx: NodeContext, presence: PresenceService | None,
                 config: PresenceConfig) -> None:
        self.ctx = ctx
        self.presence = presence
        self.config = config

    async def __call__(self, room: Room, cid: str, actor: str,
                       message: Prescribe) -> dict[str, Any]:
        if await self.ctx.lifecycle.state(cid) != State.ACTIVE:
            raise ProtocolError("bad_state", "a prescription is issued during the active call",
                                ref=message.id)
        doctor = room.participants[Role.DOCTOR]
        if (doctor.status != ParticipantStatus.CONNECTED
                or doctor.ice not in ("connected", "completed")):
            raise ProtocolError("doctor_absent", "the doctor's video is not connected",
                                ref=message.id)
        ages = await consultation_ages(self.ctx.db, cid, self.config, on=datetime.now(UTC))
        if ages is None:
            raise ProtocolError("bad_state", "the consultation's patient is unknown",
                                ref=message.id)
        limit = self.config.prescribe_guardian_age
        evidence: dict[str, Any] = {"under_age": ages.prescribe_needs_guardian,
                                    "age_limit": limit}
        if ages.prescribe_needs_guardian:
            monitor = self.presence.monitors.get(cid) if self.presence is not None else None
            state = monitor.state if monitor is not None else "unchecked"
            if state != "present":
                raise ProtocolError(
                    "guardian_absent",
                    f"the patient is under {limit}: a prescription needs the guardian "
                    f"on camera (guardian: {state}) / 6岁以下患儿开具处方需监护人在场",
                    ref=message.id)
            assert monitor is not None
            unseen = monitor.machine.unseen_s(time.monotonic())
            evidence |= {"guardian": state,
                         "guardian_unseen_s": None if unseen is None else round(unseen, 2)}
        rx = new_id("rx")
        await self.ctx.events.append(cid, "prescription.issued", actor, {
            "prescription": rx, "items": [item.record() for item in message.items], **evidence})
        return protocol.prescribed(rx, len(message.items))
