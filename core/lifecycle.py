"""The consultation lifecycle: one state machine, every transition checked and audited.

    scheduled → waiting → verifying → active → ended | terminated | aborted

waiting: the patient side has joined; verifying: the doctor has joined and is being verified
(identity, issue 3); active: the doctor accepted and every gate passed (identity, consent,
guardian presence: each a `Gate`). Transitions are a compare-and-set on the stored state, so two
nodes or two requests cannot both move a consultation, and each one is an event in the
consultation's hash-chained log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.store import Database, EventLog, records

log = logging.getLogger(__name__)


class State(StrEnum):
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    VERIFYING = "verifying"
    ACTIVE = "active"
    ENDED = "ended"
    TERMINATED = "terminated"
    ABORTED = "aborted"

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({State.ENDED, State.TERMINATED, State.ABORTED})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.SCHEDULED: frozenset({State.WAITING, State.VERIFYING, State.ABORTED}),
    State.WAITING: frozenset({State.VERIFYING, State.TERMINATED, State.ABORTED}),
    State.VERIFYING: frozenset({State.WAITING, State.ACTIVE, State.TERMINATED, State.ABORTED}),
    State.ACTIVE: frozenset({State.ENDED, State.TERMINATED, State.ABORTED}),
}


class TransitionError(Exception):
    """A transition the lifecycle does not allow, or one that lost a race."""

    def __init__(self, message: str, current: State | None = None) -> None:
        super().__init__(message)
        self.current = current


def check_transition(current: State, target: State) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, ()))) or "nothing (final)"
        raise TransitionError(
            f"cannot go from {current} to {target}; from {current} only: {allowed}", current
        )


@dataclass(frozen=True)
class Transition:
    consultation_id: str
    previous: State
    state: State
    actor: str
    reason: str | None
    remote: bool = False  # made on another node and heard through the cluster's pub/sub


# A gate is asked before `verifying → active`; it returns None to pass or a refusal reason.
Gate = Callable[[str], Awaitable[str | None]]
Listener = Callable[[Transition], Awaitable[None]]


@dataclass
class Lifecycle:
    db: Database
    events: EventLog
    accept_gates: list[tuple[str, Gate]] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)

    async def state(self, consultation_id: str) -> State:
        consultation = await records.get_consultation(self.db, consultation_id)
        if consultation is None:
            raise KeyError(consultation_id)
        return State(consultation.state)

    async def transition(
        self,
        consultation_id: str,
        target: State,
        actor: str,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
        expected: State | None = None,
    ) -> Transition:
        current = await self.state(consultation_id)
        if expected is not None and current != expected:
            raise TransitionError(f"consultation is {current}, not {expected}", current)
        check_transition(current, target)
        now = datetime.now(UTC)
        fields: dict[str, Any] = {}
        if target == State.ACTIVE:
            fields["started_at"] = now
        if target.final:
            fields["ended_at"] = now
            fields["end_reason"] = reason

        async def change_state(session: AsyncSession) -> None:
            if not await records.set_state_in(session, consultation_id, current, target,
                                              **fields):
                raise TransitionError(f"consultation changed state while moving to {target}")

        # The state and its event in one transaction: never one without the other.
        await self.events.append(
            consultation_id, "state", actor,
            {"from": str(current), "to": str(target), "reason": reason, **(data or {})},
            with_change=change_state)
        change = Transition(consultation_id, current, target, actor, reason)
        await self.notify(change)
        return change

    async def notify(self, change: Transition) -> None:
        """Tell every listener, in order. The transition is already stored and audited, so one
        failing listener (recorder, identity, ...) must not keep the others from hearing it."""
        for listener in self.listeners:
            try:
                await listener(change)
            except Exception:
                log.exception("listener %s failed on %s -> %s of %s", _name(listener),
                              change.previous, change.state, change.consultation_id)

    async def accept(self, consultation_id: str, actor: str) -> Transition:
        """The doctor starts the consultation, if every gate passes; a refusal names the gate."""
        current = await self.state(consultation_id)
        check_transition(current, State.ACTIVE)
        refusals = {}
        for name, gate in self.accept_gates:
            reason = await gate(consultation_id)
            if reason:
                refusals[name] = reason
        if refusals:
            await self.events.append(consultation_id, "accept.refused", actor, refusals)
            raise TransitionError(
                "cannot start yet: " + "; ".join(f"{k}: {v}" for k, v in refusals.items()),
                current,
            )
        return await self.transition(
            consultation_id, State.ACTIVE, actor, "accepted",
            {"gates": [name for name, _ in self.accept_gates]}, expected=current,
        )


def _name(listener: Listener) -> str:
    return getattr(listener, "__qualname__", repr(listener))
