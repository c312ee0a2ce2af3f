"""The consultation state machine: legal moves only, each one an event, races lost cleanly."""

from __future__ import annotations

import asyncio

import pytest

from core.lifecycle import FINAL, TRANSITIONS, Lifecycle, State, TransitionError, check_transition
from core.store import EventLog

from .node_fixtures import Node

LEGAL = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}


@pytest.mark.parametrize("current", list(State))
@pytest.mark.parametrize("target", list(State))
def test_transition_table(current: State, target: State) -> None:
    if (current, target) in LEGAL:
        check_transition(current, target)
    else:
        with pytest.raises(TransitionError, match=f"cannot go from {current} to {target}"):
            check_transition(current, target)


def test_final_states_lead_nowhere_and_every_state_reaches_one() -> None:
    assert all(state not in TRANSITIONS for state in FINAL)
    for state in State:
        seen, todo = set(), [state]
        while todo:
            s = todo.pop()
            seen.add(s)
            todo.extend(TRANSITIONS.get(s, set()) - seen)
        assert seen & FINAL, state


async def test_transitions_are_events_and_illegal_ones_change_nothing(node: Node) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    lifecycle: Lifecycle = node.ctx.lifecycle
    with pytest.raises(TransitionError):
        await lifecycle.transition(cid, State.ACTIVE, "doctor:x")
    assert await lifecycle.state(cid) == State.SCHEDULED
    await lifecycle.transition(cid, State.WAITING, "guardian:g", "joined")
    await lifecycle.transition(cid, State.VERIFYING, "doctor:d", "joined")
    await lifecycle.transition(cid, State.ACTIVE, "doctor:d", "accepted")
    await lifecycle.transition(cid, State.ENDED, "doctor:d", "completed")
    with pytest.raises(TransitionError, match="nothing \\(final\\)"):
        await lifecycle.transition(cid, State.ACTIVE, "doctor:d")
    events = [e for e in await EventLog(node.ctx.db).events(cid) if e.kind == "state"]
    assert [(e.data["from"], e.data["to"]) for e in events] == [
        ("scheduled", "waiting"), ("waiting", "verifying"), ("verifying", "active"),
        ("active", "ended")]
    assert events[-1].data["reason"] == "completed"
    assert (await node.ctx.events.verify(cid)).ok


async def test_racing_transitions_only_one_wins(node: Node) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    lifecycle = node.ctx.lifecycle
    await lifecycle.transition(cid, State.WAITING, "guardian:g")
    results = await asyncio.gather(
        lifecycle.transition(cid, State.VERIFYING, "doctor:d", expected=State.WAITING),
        lifecycle.transition(cid, State.ABORTED, "system", "cancelled", expected=State.WAITING),
        return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 1, results
    assert all(isinstance(r, TransitionError) for r in results if isinstance(r, Exception))
    kinds = [e.data["to"] for e in await node.ctx.events.events(cid) if e.kind == "state"]
    assert len(kinds) == 2


async def test_gates_refuse_accept_and_name_the_gate(node: Node) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    lifecycle = node.ctx.lifecycle

    async def identity_gate(_: str) -> str | None:
        return "doctor not verified"

    lifecycle.accept_gates.append(("identity", identity_gate))
    await lifecycle.transition(cid, State.VERIFYING, "doctor:d")
    with pytest.raises(TransitionError, match="identity: doctor not verified"):
        await lifecycle.accept(cid, "doctor:d")
    assert await lifecycle.state(cid) == State.VERIFYING
    refused = [e for e in await node.ctx.events.events(cid) if e.kind == "accept.refused"]
    assert refused and refused[0].data["identity"] == "doctor not verified"


async def test_a_transition_whose_event_cannot_be_stored_changes_nothing(node: Node) -> None:
    """The state and its event are one transaction: the database refusing the event (here a
    trigger, as a failing disk would) leaves the consultation where it was."""
    from sqlalchemy import text

    booking = await node.book()
    cid = booking.consultation_id
    before = len(await node.ctx.events.events(cid))
    async with node.ctx.db.session() as s, s.begin():
        await s.execute(text("CREATE TRIGGER refuse_events BEFORE INSERT ON events "
                             "BEGIN SELECT RAISE(ABORT, 'refused'); END"))
    try:
        with pytest.raises(Exception, match="refused"):
            await node.ctx.lifecycle.transition(cid, State.WAITING, "system", "test")
        assert await node.ctx.lifecycle.state(cid) == State.SCHEDULED
    finally:
        async with node.ctx.db.session() as s, s.begin():
            await s.execute(text("DROP TRIGGER refuse_events"))
    assert len(await node.ctx.events.events(cid)) == before
    await node.ctx.lifecycle.transition(cid, State.WAITING, "system", "test")
    assert await node.ctx.lifecycle.state(cid) == State.WAITING
    assert (await node.ctx.events.verify(cid)).ok
