"""The recordings disk fills up mid-call: recording stops cleanly, ops are told (the alert's
text on the real ops page), the call goes on.

A real full disk, not an injected exception: the node runs in its own mount namespace with a
small tmpfs over its recordings folder, so the writes fail with ENOSPC exactly as on a full
volume (the database stays on the ordinary disk).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.chromium import launch_chromium
from bench.faces import OBAMA, make_y4m
from core.auth import Role
from core.store import EventLog

from .clinical_helpers import start_call
from .node_fixtures import SECRET
from .node_process import booked_node

DISK = "1500k"  # a few seconds of both sides' media
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "disk-full"


def _on_small_disk(folder: Path) -> tuple[str, ...]:
    script = (f'mkdir -p "{folder}" && mount -t tmpfs -o size={DISK} tmpfs "{folder}" '
              '&& exec "$0" "$@"')
    return ("unshare", "-m", "sh", "-c", script)


@pytest.mark.timeout(120)
async def test_full_disk_stops_recording_and_the_call_goes_on(tmp_path: Path, clips) -> None:
    data = tmp_path / "data"
    async with booked_node(data, SECRET, _on_small_disk(data / "recordings"),
                           TC_RECORDING_SEGMENT_S="2") as booked:
        node, cid = booked.node, booked.booking.consultation_id
        ops_token = booked.tokens.issue(Role.OPS, "ops-1")
        ops = {"Authorization": f"Bearer {ops_token}"}
        camera = make_y4m(tmp_path / "cam.y4m", OBAMA, seconds=1)
        async with aiohttp.ClientSession() as session, \
                launch_chromium(camera, ARTIFACTS) as browser:
            ops_page = await browser.new_page("ops")
            await ops_page.goto(f"{node.url}/ops#token={ops_token}")
            await ops_page.wait_for_function("document.body.dataset.phase === 'live'",
                                             timeout=15_000)
            guardian = booked.client("guardian", clips, session)
            doctor = booked.client("doctor", clips, session)
            try:
                await start_call(guardian, doctor)
                # Both pages are told; nobody is thrown out.
                for side in (guardian, doctor):
                    notice = await side.expect("notice", timeout=60, code="recording_failed")
                    assert "call goes on" in notice["en"]
                failed_at = time.monotonic()
                for side in (guardian, doctor):
                    await side.wait_frames("video", 60, timeout=15)
                    await side.wait_frames("audio", 100, timeout=15)
                assert time.monotonic() - failed_at < 15
                # The ops page shows the alert with its reason, not a bare "alert".
                await ops_page.wait_for_function(
                    "() => [...document.querySelectorAll('#alerts li')].some(li =>"
                    " li.textContent.includes('recording.failed') &&"
                    " li.textContent.includes('No space left on device'))", timeout=15_000)
                async with session.get(f"{node.url}/api/ops/live", headers=ops) as r:
                    live = (await r.json())["consultations"][cid]
                assert live["recording"] == "failed" and live["state"] == "active", live
                async with session.get(f"{node.url}/metrics", headers=ops) as r:
                    families = {f.name: f for f in text_string_to_metric_families(await r.text())}
                errors = [s.value for s in families["tc_recording_errors"].samples
                          if s.name.endswith("_total")]
                assert errors == [1.0]
                await doctor.send({"type": "end"})
                await guardian.expect("state", state="ended")
            finally:
                await guardian.close()
                await doctor.close()
        events = await EventLog(booked.db).events(cid)
        failed = [e.data for e in events if e.kind == "recording.failed"]
        assert len(failed) == 1 and "No space left on device" in failed[0]["error"], failed
        assert (await EventLog(booked.db).verify(cid)).ok
        assert node.proc is not None and node.proc.poll() is None  # the node stayed up
        auditor = {"Authorization": f"Bearer {booked.tokens.issue(Role.AUDITOR, 'audit-1')}"}
        async with aiohttp.ClientSession(node.url, headers=auditor) as http:
            deadline = time.monotonic() + 10
            while True:  # the recorder dates the ended recording in the background: bounded
                async with http.get(f"/api/recordings/{cid}") as r:
                    recording = (await r.json())["recording"]
                if recording["retain_until"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert recording["status"] == "failed" and recording["retain_until"], recording
            async with http.get(f"/api/recordings/{cid}/verify") as r:
                report = await r.json()
            # What was stored before the disk filled is whole; nothing half-written is indexed.
            assert report["ok"] and report["checked"] >= 1, report
