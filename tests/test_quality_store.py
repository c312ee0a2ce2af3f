"""Issue 15 on both backends: the migration (tables, and the second pilot hospital renamed as
the letter names it), and reference numbers that stay unique when two nodes file at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core.store import Database, EventLog
from core.store.db import alembic_config
from server.quality import Refused, adverse, feedback, refs

from .db_fixtures import make_consultation

FORMER = "首都儿科研究所附属儿童医院 Children's Hospital, Capital Institute of Pediatrics"
LETTER = "首都医科大学附属首都儿童医学中心 Capital Center for Children's Health"


async def test_upgrade_renames_the_hospital_the_letter_renamed(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0005"))
            await conn.execute(text(
                "INSERT INTO hospitals (id, name, city, is_physical, created_at) VALUES "
                "('h_bj_cih', :old, '北京', true, CURRENT_TIMESTAMP), "
                "('h_other', :old, '北京', true, CURRENT_TIMESTAMP)"), {"old": FORMER})
    finally:
        await engine.dispose()
    db = await Database.open(database_url)  # migrates to head, as a node does at start
    try:
        async with db.engine.connect() as conn:
            names = dict((await conn.execute(text("SELECT id, name FROM hospitals"))).all())
    finally:
        await db.close()
    assert names == {"h_bj_cih": LETTER, "h_other": FORMER}  # only the pilot hospital's row


async def test_two_nodes_filing_at_once_get_distinct_numbers(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = await Database.open(database_url), await Database.open(database_url)
    try:
        first, second = await make_consultation(a), await make_consultation(a)
        at = datetime(2026, 12, 1, 16, 30, tzinfo=UTC)  # 2 December in Beijing
        # As if every filing came from another node: only the database serialises them.
        monkeypatch.setattr(refs, "lock", lambda prefix: asyncio.Lock())
        rows = await asyncio.gather(*(
            feedback.open_item(db, EventLog(db), c.id, "guardian:g", "question", None,
                               f"问题 {i}", at)
            for i in range(6) for db, c in ((a, first), (b, second))))
        assert sorted(r.ref for r in rows) == [f"TS-20261202-{n:04d}" for n in range(1, 13)]
        for c in (first, second):
            report = await EventLog(a).verify(c.id)
            assert report.ok and report.count == 6, report.problems
    finally:
        await a.close()
        await b.close()


async def test_handling_record_and_closing_on_both_backends(database: Database) -> None:
    c = await make_consultation(database)
    log = EventLog(database)
    row = await adverse.file(database, log, c.id, "doctor:d", "doctor", "moderate", "描述",
                             datetime(2026, 3, 1, 2, tzinfo=UTC))
    assert row.ref == "AE-20260301-0001"
    with pytest.raises(Refused, match="no handling record"):
        await adverse.close(database, log, row.ref, "quality:q", "quality")
    # Two staff recording at once: both steps kept, in the chain's order.
    await asyncio.gather(
        adverse.handle(database, log, row.ref, "quality:q", "quality", "clinical_review", "a"),
        adverse.handle(database, log, row.ref, "admin:x", "admin", "contacted_family", "b"))
    await adverse.close(database, log, row.ref, "quality:q", "quality")
    with pytest.raises(Refused, match="closed"):
        await adverse.handle(database, log, row.ref, "quality:q", "quality", "other", "late")
    (record,) = await adverse.records(database, cid=c.id)
    assert record.event.status == "closed" and len(record.actions) == 2


async def test_a_reply_never_lands_after_the_close(database_url: str) -> None:
    """Staff on two nodes: one closes an item while the other answers it. Whichever wins, the
    chain never shows a reply after the close (each round failed about half the time before
    the consultation's row was held first)."""
    a, b = await Database.open(database_url), await Database.open(database_url)
    try:
        c = await make_consultation(a)
        for _ in range(15):
            item = await feedback.open_item(a, EventLog(a), c.id, "guardian:g", "complaint",
                                            None, "x", datetime.now(UTC))
            await asyncio.gather(
                feedback.close(a, EventLog(a), item.ref, "quality:q", "quality"),
                feedback.reply(b, EventLog(b), item.ref, "admin:x", "admin", "y"),
                return_exceptions=True)
            last = (await EventLog(a).events(c.id))[-1]
            assert (last.kind, last.data["ref"]) == ("feedback.closed", item.ref)
        assert (await EventLog(b).verify(c.id)).ok
    finally:
        await a.close()
        await b.close()
