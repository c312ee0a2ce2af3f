"""core/store/events.py: the tamper-evident event chain, on SQLite and PostgreSQL (append,
verify, and every way of editing it behind the log's back that verify must catch)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, update

from core.store import GENESIS_HASH, SYSTEM_CHAIN, Database, Event, EventLog, event_hash
from core.store.events import safe_text
from core.store.models import utcnow
from core.store.records import get_consultation

from .db_fixtures import make_consultation


async def test_chain_append_and_verify(database: Database) -> None:
    c = await make_consultation(database)
    log = EventLog(database)
    first = await log.append(c.id, "consultation.booked", "patient:p1", {"visit": "first"})
    second = await log.append(c.id, "consent.recorded", "guardian:g1", {"text": "同意", "n": 1.5})
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert second.at.utcoffset() == timedelta(0) and second.at >= first.at

    stored = await log.events(c.id)
    assert [(e.seq, e.kind, e.data, e.hash) for e in stored] == [
        (1, "consultation.booked", {"visit": "first"}, first.hash),
        (2, "consent.recorded", {"text": "同意", "n": 1.5}, second.hash)]
    head = await get_consultation(database, c.id)
    assert head is not None and (head.event_seq, head.event_head) == (2, second.hash)

    report = await log.verify(c.id)
    assert (report.ok, report.count, report.problems) == (True, 2, [])

    await log.append(SYSTEM_CHAIN, "node.started", "node:a", {"version": "0.1"})
    assert (await log.verify(SYSTEM_CHAIN)).ok
    with pytest.raises(LookupError):
        await log.append("c_nope", "x", "y", {})


async def _chain_of(database: Database, n: int) -> tuple[EventLog, str]:
    c = await make_consultation(database)
    log = EventLog(database)
    for i in range(n):
        await log.append(c.id, "step", "system", {"i": i})
    return log, c.id


async def test_verify_detects_an_edited_event(database: Database) -> None:
    log, chain = await _chain_of(database, 4)
    async with database.session() as s, s.begin():
        await s.execute(update(Event).where(Event.chain == chain, Event.seq == 3)
                        .values(data={"i": 99}))
    report = await log.verify(chain)
    assert not report.ok and report.count == 4
    assert report.problems == ["event 3: hash does not match its content"]


async def test_verify_detects_an_edit_with_a_recomputed_hash(database: Database) -> None:
    log, chain = await _chain_of(database, 4)
    async with database.session() as s, s.begin():
        await s.execute(update(Event).where(Event.chain == chain, Event.seq == 2)
                        .values(hash="f" * 64))
    assert "event 3: does not link to the event before it (prev_hash mismatch)" in (
        await log.verify(chain)).problems


async def test_verify_detects_a_deleted_middle_event(database: Database) -> None:
    log, chain = await _chain_of(database, 5)
    async with database.session() as s, s.begin():
        await s.execute(delete(Event).where(Event.chain == chain, Event.seq == 3))
    report = await log.verify(chain)
    assert not report.ok and report.count == 4
    assert "event 3 is missing" in report.problems


async def test_verify_detects_a_deleted_last_event(database: Database) -> None:
    log, chain = await _chain_of(database, 5)
    async with database.session() as s, s.begin():
        await s.execute(delete(Event).where(Event.chain == chain, Event.seq >= 4))
    report = await log.verify(chain)
    assert not report.ok and report.count == 3
    assert report.problems == [
        "events 4–5 are missing at the end of the chain (the consultation records 5 events)"]

    # Appending afterwards does not paper over the hole.
    await log.append(chain, "step", "system", {"i": "after"})
    assert "events 4–5 are missing" in (await log.verify(chain)).problems


async def test_verify_detects_an_event_added_behind_the_logs_back(database: Database) -> None:
    """A forger who links and hashes a new last event correctly still cannot move the head."""
    log, chain = await _chain_of(database, 3)
    last = (await log.events(chain))[-1]
    at = utcnow()
    data = {"i": "forged"}
    async with database.session() as s, s.begin():
        s.add(Event(chain=chain, seq=4, at=at, kind="step", actor="system", data=data,
                    prev_hash=last.hash,
                    hash=event_hash(last.hash, chain, 4, at, "step", "system", data)))
    report = await log.verify(chain)
    assert not report.ok and report.count == 3
    assert report.problems == [
        "event 4: after the last event the consultation records (written outside the log)"]


async def test_concurrent_appends_make_a_gapless_chain(database: Database) -> None:
    c = await make_consultation(database)
    log = EventLog(database)
    await asyncio.gather(*(log.append(c.id, "tick", "system", {"i": i}) for i in range(50)))
    events = await log.events(c.id)
    assert [e.seq for e in events] == list(range(1, 51))
    assert sorted(e.data["i"] for e in events) == list(range(50))
    report = await log.verify(c.id)
    assert report.ok and report.count == 50


@pytest.mark.parametrize("chain", ["consultation", SYSTEM_CHAIN])
async def test_two_nodes_appending_to_one_chain(database_url: str, chain: str) -> None:
    """Two processes' worth of engines and logs: the database, not the asyncio lock, decides."""
    a, b = await Database.open(database_url), await Database.open(database_url)
    try:
        chain_id = (await make_consultation(a)).id if chain == "consultation" else chain
        log_a, log_b = EventLog(a), EventLog(b)
        await asyncio.gather(*(log.append(chain_id, "tick", name, {"i": i})
                               for i in range(20)
                               for name, log in (("a", log_a), ("b", log_b))))
        events = await log_a.events(chain_id)
        assert [e.seq for e in events] == list(range(1, 41))
        report = await log_b.verify(chain_id)
        assert report.ok, report.problems
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("bad", [{"when": datetime.now(UTC)}, {"x": object()}, {"s": {1, 2}},
                                 {"nan": float("nan")}, ["not", "a", "dict"]])
async def test_non_json_data_is_rejected(database: Database, bad: object) -> None:
    c = await make_consultation(database)
    log = EventLog(database)
    with pytest.raises(TypeError, match="event data"):
        await log.append(c.id, "x", "y", bad)  # type: ignore[arg-type]
    assert await log.events(c.id) == []
    assert (await get_consultation(database, c.id)).event_seq == 0  # type: ignore[union-attr]


async def test_safe_text_makes_what_a_client_sent_storable(database: Database) -> None:
    """A refused message's text goes into the log (signaling.refused): a NUL (PostgreSQL refuses
    it) or a lone surrogate (no encoding takes it, so neither the hash) cannot stay as it is."""
    c = await make_consultation(database)
    log = EventLog(database)
    sent = "bad\x00type\ud800" + "x" * 600
    with pytest.raises(UnicodeEncodeError):
        await log.append(c.id, "signaling.refused", "guardian:g1", {"message": sent})
    text = safe_text(sent)
    assert text.startswith("bad\\u0000type\\ud800x") and len(text) == 500 + 10
    assert safe_text("同意 ok") == "同意 ok"  # the rest stays as it was
    await log.append(c.id, "signaling.refused", "guardian:g1", {"message": text})
    assert [e.data for e in await log.events(c.id)] == [{"message": text}]
    assert (await log.verify(c.id)).ok
