"""Helpers shared by the call tests: joining a booked call, consent, referral (issue 6)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from bench.client import CallClient
from core.consent import CURRENT_VERSION
from core.policy.dates import SHANGHAI
from core.store import ChainReport, EventLog
from server.demo import Booking


async def give_consent(guardian: CallClient, doctor: CallClient) -> None:
    """The guardian accepts the current consent text; returns once the doctor's side knows."""
    await guardian.send({"type": "consent", "version": CURRENT_VERSION})
    await doctor.expect("consent", given=True)


async def chain_verified(events: EventLog, cid: str, timeout: float = 5.0) -> ChainReport:
    """The chain's report once no append is in flight (a closed call still logs its departures).

    EventLog.verify reads the events and the recorded head in two statements; on SQLite an append
    landing between them reads as "missing at the end". So wait (bounded) for a report that holds.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        report = await events.verify(cid)
        if report.ok or asyncio.get_running_loop().time() > deadline:
            return report
        await asyncio.sleep(0.05)


@asynccontextmanager
async def joined(node, clips) -> AsyncIterator[tuple[Booking, CallClient, CallClient]]:  # type: ignore[no-untyped-def]
    """Book; join the guardian and the doctor with media (not yet consented); close both after."""
    booking = await node.book()
    guardian = node.client(booking.guardian_link.split("#token=")[1], clips)
    doctor = node.client(booking.doctor_link.split("#token=")[1], clips)
    try:
        for side in (guardian, doctor):
            await side.connect()
            await side.start_media()
        yield booking, guardian, doctor
    finally:
        await guardian.close()
        await doctor.close()


async def start_call(guardian: CallClient, doctor: CallClient) -> None:
    """Join both sides with media, consent, accept: the consultation is active."""
    for side in (guardian, doctor):
        await side.connect()
        await side.start_media()
    await give_consent(guardian, doctor)
    await doctor.send({"type": "accept"})
    await guardian.expect("state", state="active")


async def active_call(node, clips):  # type: ignore[no-untyped-def]
    """Book, join both sides with media, consent, accept: an active call with frames flowing."""
    booking = await node.book()
    guardian = node.client(booking.guardian_link.split("#token=")[1], clips)
    doctor = node.client(booking.doctor_link.split("#token=")[1], clips)
    await start_call(guardian, doctor)
    for side in (guardian, doctor):
        await side.wait_frames("video", 10)
    return booking, guardian, doctor


def around_today() -> str:
    """An export range holding consultations booked in a test (Beijing dates)."""
    today = datetime.now(SHANGHAI).date()
    return f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"


async def exported(session: aiohttp.ClientSession, url: str, token: str,
                   days: str | None = None) -> dict[str, dict[str, Any]]:
    """The regulator's export over HTTP, by consultation id."""
    async with session.get(f"{url}/api/export/consultations?{days or around_today()}",
                           headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        return {row["consultation_id"]: row for row in map(json.loads,
                                                           (await r.text()).splitlines())}
