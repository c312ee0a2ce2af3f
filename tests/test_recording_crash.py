"""SIGKILL the node mid-recording: after a restart, what was written plays, verifies, and the
event log says what happened."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import av
import pytest

from core.auth import Role
from core.store import Database, EventLog

from .clinical_helpers import start_call
from .node_fixtures import SECRET
from .node_process import booked_node

SEGMENT_S = 3.0
GRACE_S = 2.0


async def _events(db: Database, cid: str) -> list:
    return await EventLog(db).events(cid)


async def _until(db: Database, cid: str, test, timeout: float, what: str) -> list:
    deadline = time.monotonic() + timeout
    while True:
        events = await _events(db, cid)
        if test(events):
            return events
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s; events: {[e.kind for e in events]}")
        await asyncio.sleep(0.2)


@pytest.mark.timeout(120)
async def test_killed_node_recovers_its_recording(tmp_path: Path, clips) -> None:
    data = tmp_path / "data"
    async with booked_node(data, SECRET, TC_RECORDING_SEGMENT_S=str(SEGMENT_S),
                           TC_REJOIN_GRACE=str(GRACE_S)) as booked:
        node, db, tokens = booked.node, booked.db, booked.tokens
        cid = booked.booking.consultation_id
        async with aiohttp.ClientSession() as session:
            guardian = booked.client("guardian", clips, session)
            doctor = booked.client("doctor", clips, session)
            try:
                await start_call(guardian, doctor)
                # Two closed segments per side, then a little into the third.
                await _until(db, cid, lambda ev: sum(e.kind == "recording.segment"
                                                     for e in ev) >= 4, 30, "4 segments")
                spool = data / "recordings" / "spool" / cid
                deadline = time.monotonic() + 10
                # Each side's open segment holds at least one flushed cluster (about a second).
                while len([p for p in spool.glob("*.webm") if p.stat().st_size > 20_000]) < 2:
                    assert time.monotonic() < deadline, "the open segments did not grow"
                    await asyncio.sleep(0.1)
                for open_segment in spool.glob("*.webm"):  # at rest: encrypted as written
                    head = open_segment.read_bytes()[:4096]
                    assert head.startswith(b"TCSPL1") and b"\x1a\x45\xdf\xa3" not in head
                node.kill()
                killed_at = datetime.now(UTC)
            finally:
                await guardian.close()
                await doctor.close()

        node.start()  # recovery runs before the node answers its health check
        events = await _until(db, cid, lambda ev: any(e.kind == "recording.interrupted"
                                                      for e in ev), 30, "interrupted")
        kinds = [e.kind for e in events]
        recovered = [e for e in events if e.kind == "recording.recovered"]
        assert {e.data["role"] for e in recovered} == {"doctor", "guardian"}, kinds
        assert (await EventLog(db).verify(cid)).ok

        auditor = {"Authorization": f"Bearer {tokens.issue(Role.AUDITOR, 'audit-1')}"}
        async with aiohttp.ClientSession(node.url, headers=auditor) as http:
            async with http.get(f"/api/recordings/{cid}/verify") as r:
                report = await r.json()
                assert r.status == 200 and report["ok"], report
                assert report["checked"] >= 6
            async with http.get(f"/api/recordings/{cid}") as r:
                detail = await r.json()
            epoch = datetime.fromisoformat(detail["recording"]["epoch"])
            assert detail["recording"]["status"] == "interrupted"
            killed_ms = (killed_at - epoch).total_seconds() * 1000
            for role in ("doctor", "guardian"):
                mine = sorted((s for s in detail["segments"] if s["role"] == role),
                              key=lambda s: s["seq"])
                assert mine[-1]["state"] == "recovered" and all(
                    s["state"] == "closed" for s in mine[:-1])
                recorded_until = mine[-1]["t_start_ms"] + mine[-1]["duration_ms"]
                # Lost: at most the open segment's unflushed tail, far less than a segment.
                assert killed_ms - recorded_until < SEGMENT_S * 1000, (role, killed_ms,
                                                                       recorded_until)
                for seg in mine:
                    async with http.post(f"/api/recordings/{cid}/segments/{seg['id']}/access"
                                         ) as r:
                        url = (await r.json())["url"]
                    async with http.get(url) as r:
                        assert r.status == 200
                        body = await r.read()
                    path = tmp_path / f"{role}-{seg['seq']}.webm"
                    path.write_bytes(body)
                    with av.open(str(path)) as container:
                        got = {s.type: 0 for s in container.streams}
                        for packet in container.demux():
                            if packet.size:
                                got[packet.stream.type] += 1
                    assert got["video"] > 0 and got["audio"] > 0, (seg, got)

        # Nobody came back: after the grace period the consultation is no longer "under way",
        # and so the recording gets its retention date.
        events = await _until(db, cid, lambda ev: any(
            e.kind == "state" and e.data["to"] == "aborted" for e in ev), 5 * GRACE_S + 10,
            "the abandoned consultation aborted")
        aborted = next(e for e in events if e.kind == "state" and e.data["to"] == "aborted")
        assert aborted.actor == "system" and "nobody rejoined" in aborted.data["reason"]
        deadline = time.monotonic() + 10
        async with aiohttp.ClientSession(node.url, headers=auditor) as http:
            while True:  # the recorder closes the recording just after the transition
                async with http.get(f"/api/recordings/{cid}") as r:
                    recording = (await r.json())["recording"]
                if recording["retain_until"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        assert recording["retain_until"] and recording["status"] == "interrupted", recording
