"""Several real node processes sharing a real Redis and PostgreSQL: placement, redirect, failover.

Each node is `python -m server run` in its own process; clients are real aiortc peers.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.client import CallClient
from server.auth import Role, Tokens
from server.config import load_settings
from server.demo import seed
from server.store import Database, EventLog
from signaling import ice

from .clinical_helpers import give_consent
from .db_fixtures import fresh_pg_database, pg_dsn
from .node_process import NodeProcess, free_port

SECRET = secrets.token_urlsafe(40)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "ops"


@dataclass
class Cluster:
    a: NodeProcess
    b: NodeProcess
    database_url: str
    tokens: Tokens

    async def book(self, tmp: Path) -> tuple[str, str, str]:
        settings = load_settings(data_dir=tmp / "seed", token_secret=SECRET,
                                 database_url=self.database_url)
        db = await Database.open(self.database_url)
        try:
            booking = await seed(db, settings, self.tokens)
        finally:
            await db.close()
        return (booking.consultation_id,
                self.tokens.issue(Role.GUARDIAN, booking.guardian_id, booking.consultation_id),
                self.tokens.issue(Role.DOCTOR, booking.doctor_id, booking.consultation_id))

    async def events(self, cid: str) -> list[tuple[str, dict]]:
        db = await Database.open(self.database_url)
        try:
            return [(e.kind, e.data) for e in await EventLog(db).events(cid)]
        finally:
            await db.close()


@pytest.fixture
async def cluster(tmp_path: Path, redis_server) -> AsyncIterator[Cluster]:
    async with fresh_pg_database(pg_dsn()) as url:
        env = {"DATABASE_URL": url, "REDIS_URL": redis_server.url,
               "TC_HEARTBEAT": "0.5", "TC_NODE_TTL": "2", "TC_IDENTITY_REQUIRED": "0",
               "TC_REJOIN_GRACE": "20", "TC_STATS_INTERVAL": "0.5"}
        a = NodeProcess(tmp_path / "a", free_port(), SECRET, TC_NODE_ID="node-a", **env)
        b = NodeProcess(tmp_path / "b", free_port(), SECRET, TC_NODE_ID="node-b", **env)
        ice.use_host_addresses(["127.0.0.1"])  # for this process's clients: loopback only
        try:
            a.start()  # first alone: it runs the migrations
            b.start()
            yield Cluster(a, b, url, Tokens(SECRET, 3600))
        finally:
            ice.use_host_addresses([])
            a.stop()
            b.stop()


async def _call(cluster: Cluster, session, tmp_path: Path, clips) -> tuple[str, CallClient,
                                                                         CallClient]:
    cid, guardian_token, doctor_token = await cluster.book(tmp_path)
    guardian = CallClient(cluster.b.url, guardian_token, clips, session)
    doctor = CallClient(cluster.a.url, doctor_token, clips, session)
    await guardian.connect()
    await guardian.start_media()
    await doctor.connect()  # reaches node A, which sends it to B
    await doctor.start_media()
    return cid, guardian, doctor


async def _accepted(guardian: CallClient, doctor: CallClient) -> None:
    await give_consent(guardian, doctor)
    await doctor.send({"type": "accept"})
    await guardian.expect("state", state="active")
    await guardian.wait_frames("video", 10)


async def test_join_through_another_node_lands_on_one_node_and_ops_sees_it(
        cluster: Cluster, tmp_path: Path, clips) -> None:
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


async def test_node_killed_mid_call_fails_over(cluster: Cluster, tmp_path: Path, clips) -> None:
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
    kinds = [(k, d) for k, d in await cluster.events(cid)]
    rehomed = [d for k, d in kinds if k == "consultation.rehomed"]
    assert rehomed and rehomed[0]["from"] == "node-b" and rehomed[0]["to"] == "node-a", kinds
    # Recording goes on, in new segments on the new node.
    started = [k for k, _ in kinds if k == "recording.started"]
    assert len(started) == 2, [k for k, _ in kinds]


async def test_ops_ending_a_call_through_another_node_stops_it_on_its_host(
        cluster: Cluster, tmp_path: Path, clips) -> None:
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
        kinds = [k for k, _ in await cluster.events(cid)]
        if "recording.stopped" in kinds or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert "recording.stopped" in kinds, kinds
    assert kinds.count("recording.segment") >= 2, kinds  # both sides' last segments stored


async def test_drained_node_sends_new_consultations_elsewhere(
        cluster: Cluster, tmp_path: Path, clips) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        ops = cluster.tokens.issue(Role.OPS, "ops-1")
        async with session.post(cluster.b.url + "/api/ops/drain",
                                headers={"Authorization": f"Bearer {ops}"}) as r:
            assert r.status == 200 and (await r.json())["draining"] is True
        _, guardian_token, _ = await cluster.book(tmp_path)
        guardian = CallClient(cluster.b.url, guardian_token, clips, session)
        try:
            await guardian.connect()
            assert guardian.redirects == [cluster.a.url]
        finally:
            await guardian.close()
