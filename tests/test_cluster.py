"""Several real node processes sharing a real Redis and PostgreSQL: placement, redirect, failover.

Each node is `python -m server run` in its own process; clients are real aiortc peers.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.client import CallClient
from core.auth import Role

from .clinical_helpers import give_consent
from .cluster_fixtures import TwoNodes, two_nodes

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "ops"


@pytest.fixture
async def cluster(tmp_path: Path, redis_server) -> AsyncIterator[TwoNodes]:
    async with two_nodes(tmp_path, redis_server.url, TC_STATS_INTERVAL="0.5") as nodes:
        yield nodes


async def _call(cluster: TwoNodes, session, tmp_path: Path, clips) -> tuple[str, CallClient,
                                                                         CallClient]:
    booking = await cluster.book(tmp_path)
    guardian = CallClient(cluster.b.url, _token(booking.guardian_link), clips, session)
    doctor = CallClient(cluster.a.url, _token(booking.doctor_link), clips, session)
    await guardian.connect()
    await guardian.start_media()
    await doctor.connect()  # reaches node A, which sends it to B
    await doctor.start_media()
    return booking.consultation_id, guardian, doctor


def _token(link: str) -> str:
    return link.split("#token=")[1]


async def _accepted(guardian: CallClient, doctor: CallClient) -> None:
    await give_consent(guardian, doctor)
    await doctor.send({"type": "accept"})
    await guardian.expect("state", state="active")
    await guardian.wait_frames("video", 10)


async def test_join_through_another_node_lands_on_one_node_and_ops_sees_it(
        cluster: TwoNodes, tmp_path: Path, clips) -> None:
    import aiohttp

    from bench.chromium import launch_chromium
    from bench.faces import OBAMA, make_y4m

    async with aiohttp.ClientSession() as session:
        cid, guardian, doctor = await _call(cluster, session, tmp_path, clips)
        try:
            assert doctor.redirects == [cluster.b.url]
            assert guardian.redirects == []
            await guardian.wait_frames("video", 20)
            await doctor.wait_frames("video", 20)
            ops = cluster.tokens.issue(Role.OPS, "ops-1")
            camera = make_y4m(tmp_path / "cam.y4m", OBAMA, seconds=1)
            async with launch_chromium(camera, ARTIFACTS) as browser:
                page = await browser.new_page("ops")
                # On node A, which does not host the call: the view is the cluster's, via Redis.
                await page.goto(f"{cluster.a.url}/ops#token={ops}")
                row = page.locator(f'tr[data-cid="{cid}"]')
                await row.wait_for(timeout=15_000)
                await page.wait_for_function(
                    "cid => { const r = document.querySelector(`tr[data-cid=\"${cid}\"]`);"
                    " return r && (r.textContent.match(/fps/g) || []).length >= 2; }",
                    arg=cid, timeout=15_000)
                text = await row.inner_text()
                assert "node-b" in text and "connected" in text
                rates = [float(x) for x in re.findall(r"up ([\d.]+) fps", text)]
                assert len(rates) == 2 and all(0 < r < 100 for r in rates), text
                await browser.screenshot(page, "ops-live")
        finally:
            await guardian.close()
            await doctor.close()


async def test_node_killed_mid_call_fails_over(cluster: TwoNodes, tmp_path: Path, clips) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        cid, guardian, doctor = await _call(cluster, session, tmp_path, clips)
        try:
            await _accepted(guardian, doctor)
            cluster.b.kill()
            killed = time.monotonic()
            await guardian.expect("closed", timeout=10)
            urls = [cluster.a.url, cluster.b.url]
            for side in (guardian, doctor):
                await side.drop()
            rejoined = await asyncio.gather(guardian.rejoin(urls), doctor.rejoin(urls))
            assert all(j["consultation"]["state"] == "active" for j in rejoined)
            for side in (guardian, doctor):
                await side.start_media()
            await guardian.wait_frames("video", 15)
            await doctor.wait_frames("video", 15)
            took = time.monotonic() - killed
            assert took < 2 + 15, f"failover took {took:.1f} s"
            assert guardian.base_url == cluster.a.url and doctor.base_url == cluster.a.url
        finally:
            await guardian.close()
            await doctor.close()
    kinds = [(e.kind, e.data) for e in await cluster.events(cid)]
    rehomed = [d for k, d in kinds if k == "consultation.rehomed"]
    assert rehomed and rehomed[0]["from"] == "node-b" and rehomed[0]["to"] == "node-a", kinds
    # Recording goes on, in new segments on the new node.
    started = [k for k, _ in kinds if k == "recording.started"]
    assert len(started) == 2, [k for k, _ in kinds]


async def test_ops_ending_a_call_through_another_node_stops_it_on_its_host(
        cluster: TwoNodes, tmp_path: Path, clips) -> None:
    """The host hears the remote transition: room closed, recording closed and indexed."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        cid, guardian, doctor = await _call(cluster, session, tmp_path, clips)
        try:
            await _accepted(guardian, doctor)
            ops = cluster.tokens.issue(Role.OPS, "ops-1")
            async with session.post(f"{cluster.a.url}/api/ops/consultations/{cid}/end",
                                    json={"reason": "drill"},
                                    headers={"Authorization": f"Bearer {ops}"}) as r:
                assert r.status == 200, await r.text()
            await guardian.expect("state", state="aborted", timeout=5)
            await doctor.expect("state", state="aborted", timeout=5)
        finally:
            await guardian.close()
            await doctor.close()
    deadline = time.monotonic() + 10
    while True:  # the host closes the last segments in the background: poll, bounded
        kinds = [e.kind for e in await cluster.events(cid)]
        if "recording.stopped" in kinds or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert "recording.stopped" in kinds, kinds
    assert kinds.count("recording.segment") >= 2, kinds  # both sides' last segments stored


async def test_drained_node_sends_new_consultations_elsewhere(
        cluster: TwoNodes, tmp_path: Path, clips) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        ops = cluster.tokens.issue(Role.OPS, "ops-1")
        async with session.post(cluster.b.url + "/api/ops/drain",
                                headers={"Authorization": f"Bearer {ops}"}) as r:
            assert r.status == 200 and (await r.json())["draining"] is True
        booking = await cluster.book(tmp_path)
        guardian = CallClient(cluster.b.url, _token(booking.guardian_link), clips, session)
        try:
            await guardian.connect()
            assert guardian.redirects == [cluster.a.url]
        finally:
            await guardian.close()
