"""Two node processes sharing PostgreSQL, Redis and the object store (issue 12 item 5).

The call fails over from A to B mid-recording; A comes back and recovers its spool; the auditor
replays through A and through B and gets the same segments, from both nodes, playable and on one
consultation clock; verify-recordings passes from either node. And a doctor enrolled through A
is verified on B: B reads the enrollment from the database, the photo from the bucket, and A
reads the evidence B stored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import aiohttp
import av
import pytest

from bench.client import CallClient
from bench.clip import read_stamp
from core.auth import Role, Tokens
from core.config import load_settings
from core.store import Database
from server.demo import seed
from signaling import ice

from .clinical_helpers import give_consent
from .cluster_fixtures import SECRET, TwoNodes, two_nodes
from .db_fixtures import fresh_pg_database, pg_dsn
from .node_process import NodeProcess, free_port
from .recording_helpers import wait_for
from .s3_fixtures import S3Server

SEGMENT_S = 3.0


@dataclass
class StoreCluster(TwoNodes):
    s3: S3Server
    bucket: str
    recording_key: str


@pytest.fixture
async def cluster(tmp_path: Path, redis_server, s3_server: S3Server
                  ) -> AsyncIterator[StoreCluster]:
    bucket = s3_server.bucket(object_lock=True)
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    async with two_nodes(tmp_path, redis_server.url, TC_RECORDING_SEGMENT_S=str(SEGMENT_S),
                         TC_RECORDING_KEY=key, **s3_server.env(bucket)) as nodes:
        yield StoreCluster(**vars(nodes), s3=s3_server, bucket=bucket, recording_key=key)


def _token(link: str) -> str:
    return link.split("#token=")[1]


async def _count(cluster: StoreCluster, cid: str, kind: str) -> int:
    return sum(e.kind == kind for e in await cluster.events(cid))


async def _replay(http: aiohttp.ClientSession, url: str, cid: str, seg: dict) -> bytes:
    """One segment as the auditor's player gets it from the node at `url`."""
    async with http.post(f"{url}/api/recordings/{cid}/segments/{seg['id']}/access") as r:
        assert r.status == 200, await r.text()
        media = (await r.json())["url"]
    async with http.get(url + media) as r:
        assert r.status == 200, await r.text()
        return await r.read()


def _stamps(path: Path, t_start_ms: int) -> dict[str, list[tuple[float, float]]]:
    """(seconds on the consultation clock, the sender's wall-clock stamp) per kind."""
    stamps: dict[str, list[tuple[float, float]]] = {"audio": [], "video": []}
    with av.open(str(path)) as container:
        kinds = {s.index: s.type for s in container.streams}
        for packet in container.demux():
            sent = read_stamp(bytes(packet)) if packet.size else None
            if sent is not None:
                at = t_start_ms / 1000 + float(packet.pts * packet.time_base)
                stamps[kinds[packet.stream_index]].append((at, sent))
    return stamps


@pytest.mark.timeout(240)
async def test_failover_mid_recording_replays_in_sync_through_either_node(
        cluster: StoreCluster, tmp_path: Path, clips) -> None:
    booking = await cluster.book(tmp_path)
    cid = booking.consultation_id
    auditor = cluster.auth(Role.AUDITOR, "audit-1")
    async with aiohttp.ClientSession() as session:
        guardian = CallClient(cluster.a.url, _token(booking.guardian_link), clips, session)
        doctor = CallClient(cluster.b.url, _token(booking.doctor_link), clips, session)
        try:
            await guardian.connect()  # first join: hosted on A
            await guardian.start_media()
            await doctor.connect()  # reaches B, which sends it to A
            await doctor.start_media()
            assert guardian.redirects == [] and doctor.redirects == [cluster.a.url]
            await give_consent(guardian, doctor)
            await doctor.send({"type": "accept"})
            await guardian.expect("state", state="active")

            def segments_stored(n: int):
                async def check() -> bool:
                    return await _count(cluster, cid, "recording.segment") >= n
                return check

            await wait_for(segments_stored(4), 30, "two segments a side stored by A")
            spool = cluster.a.data_dir / "recordings" / "spool" / cid
            # Each side's open segment has a flushed cluster on A's disk: killed mid-segment.
            await wait_for(_grown(spool), 10, "A's open segments written to")
            cluster.a.kill()
            killed_at = time.time()
            await guardian.expect("closed", timeout=10)
            for side in (guardian, doctor):
                await side.drop()
            urls = [cluster.b.url, cluster.a.url]
            rejoined = await asyncio.gather(guardian.rejoin(urls), doctor.rejoin(urls))
            assert all(j["consultation"]["state"] == "active" for j in rejoined)
            assert guardian.base_url == doctor.base_url == cluster.b.url
            for side in (guardian, doctor):
                await side.start_media()
            await guardian.wait_frames("video", 15)
            resumed_at = time.time()
            before = await _count(cluster, cid, "recording.segment")
            await wait_for(segments_stored(before + 4), 30, "two segments a side by B")
            await doctor.send({"type": "end", "reason": "completed"})
            await guardian.expect("state", state="ended")

            async def stopped() -> bool:
                return await _count(cluster, cid, "recording.stopped") >= 1
            await wait_for(stopped, 20, "B stored its last segments")
        finally:
            await guardian.close()
            await doctor.close()
    # A back, with its spool: recovery stores A's last segments. (After the call: while B
    # still records, A's recovery and B could pick the same next number; see the report.)
    cluster.a.start()

    events = await cluster.events(cid)
    rehomed = [e.data for e in events if e.kind == "consultation.rehomed"]
    assert rehomed and (rehomed[0]["from"], rehomed[0]["to"]) == ("node-a", "node-b")
    assert {e.data["role"] for e in events if e.kind == "recording.recovered"} == {
        "doctor", "guardian"}, [e.kind for e in events]

    async with aiohttp.ClientSession(headers=auditor) as http:
        details = {}
        for node in (cluster.a, cluster.b):
            async with http.get(f"{node.url}/api/recordings/{cid}") as r:
                assert r.status == 200
                details[node.url] = await r.json()
        listed_a, listed_b = (details[n.url]["segments"] for n in (cluster.a, cluster.b))
        assert listed_a == listed_b  # one index, the same listing from either node
        epoch_s = datetime.fromisoformat(
            details[cluster.a.url]["recording"]["epoch"]).timestamp()
        killed_ms, resumed_ms = (1000 * (t - epoch_s) for t in (killed_at, resumed_at))

        offsets: dict[str, list[float]] = {}
        report_rows = []
        for role in ("doctor", "guardian"):
            mine = sorted((s for s in listed_a if s["role"] == role),
                          key=lambda s: s["t_start_ms"])
            by_a = [s for s in mine if s["t_start_ms"] < killed_ms]
            by_b = [s for s in mine if s["t_start_ms"] >= killed_ms]
            assert len(by_a) >= 3 and len(by_b) >= 2, mine
            assert by_a[-1]["state"] == "recovered"  # A's open segment, from its spool
            # (and any segment A had closed but not yet stored: recovered too)
            states = [s["state"] for s in by_a]
            assert states == sorted(states) and all(s["state"] == "closed" for s in by_b)
            # On one clock: A's segments end before the kill, B's start after the rejoin,
            # each node's own are contiguous and nothing overlaps.
            for x, y in itertools.pairwise(mine):
                end = x["t_start_ms"] + x["duration_ms"]
                assert y["t_start_ms"] >= end - 50, (x, y)
                if (x, y) != (by_a[-1], by_b[0]):
                    assert y["t_start_ms"] - end < 100, (x, y)
            a_end = by_a[-1]["t_start_ms"] + by_a[-1]["duration_ms"]
            assert killed_ms - SEGMENT_S * 1000 < a_end <= killed_ms + 100
            assert killed_ms < by_b[0]["t_start_ms"] <= resumed_ms + 100, (by_b[0],
                                                                            killed_ms)
            for seg in mine:
                bodies = [await _replay(http, n.url, cid, seg)
                          for n in (cluster.a, cluster.b)]
                assert bodies[0] == bodies[1] and bodies[0][:4] == b"\x1a\x45\xdf\xa3"
                assert len(bodies[0]) > 1000
                path = tmp_path / f"{role}-{seg['seq']}.webm"
                path.write_bytes(bodies[0])
                stamps = await asyncio.to_thread(_stamps, path, seg["t_start_ms"])
                assert stamps["video"] and stamps["audio"], seg
                for kind in ("video", "audio"):
                    offset = statistics.median(at - sent for at, sent in stamps[kind])
                    offsets.setdefault(role, []).append(offset)
                    report_rows.append((role, seg["seq"], seg["state"], kind,
                                        round(offset, 3)))
        # Where the senders' stamps sit on the clock: the same before and after the
        # failover, for both kinds and both sides (one clock, not two nodes' own).
        everything = [o for v in offsets.values() for o in v]
        spread = max(everything) - min(everything)
        assert spread < 0.25, report_rows

        for node in (cluster.a, cluster.b):
            async with http.get(f"{node.url}/api/recordings/{cid}/verify") as r:
                report = await r.json()
            assert r.status == 200 and report["ok"], report
            assert report["checked"] == len(listed_a), report
    for node in (cluster.a, cluster.b):
        done = await asyncio.to_thread(node.cli, "verify-recordings", cid)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["ok"] is True
    print(json.dumps({"segments": len(listed_a), "offset_spread_s": round(spread, 3),
                      "failover_gap_ms": round(resumed_ms - killed_ms)}))


def _grown(spool: Path):
    async def check() -> bool:
        sizes = await asyncio.to_thread(
            lambda: [p.stat().st_size for p in spool.glob("*.webm")])
        # A first cluster (a second of media) on disk on both sides at once. The muxer writes a
        # cluster whole, so a side's open segment has data from about a second after it opened
        # until it closes; with 2 s segments and the sides' key frames a second apart, that was
        # never both at once: segments here are 3 s.
        return len([s for s in sizes if s > 20_000]) >= 2
    return check


@pytest.fixture(scope="module")
def shots():
    from bench.identity import camera_shots

    return camera_shots()


@pytest.mark.timeout(180)
async def test_a_doctor_enrolled_through_a_is_verified_on_b(
        tmp_path: Path, redis_server, s3_server: S3Server, shots) -> None:
    """A is a node process; B runs in this process, beside it in the same cluster (same
    database, Redis and bucket), so that the scripted doctor can pace its head turns by what
    B's verifier has judged (bench/identity.py)."""
    from aiohttp.test_utils import TestServer

    from bench.faces import OBAMA
    from bench.identity import do_actions, show
    from core.config.identity import IdentityConfig
    from identity.doctor.registry_api import IDENTITY_KEY
    from server.app import create_app

    bucket = s3_server.bucket(object_lock=False)
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    tokens = Tokens(SECRET, 3600)
    async with fresh_pg_database(pg_dsn()) as url:
        a = NodeProcess(tmp_path / "a", free_port(), SECRET, TC_NODE_ID="node-a",
                        DATABASE_URL=url, REDIS_URL=redis_server.url, TC_HEARTBEAT="0.5",
                        TC_NODE_TTL="2", TC_RECORDING_KEY=key, **s3_server.env(bucket))
        ice.use_host_addresses(["127.0.0.1"])
        b_server = None
        try:
            await asyncio.to_thread(a.start)  # runs the migrations
            settings = load_settings(
                data_dir=tmp_path / "b", token_secret=SECRET, database_url=url,
                redis_url=redis_server.url, node_id="node-b", host="127.0.0.1", port=0,
                ice_host_addresses=["127.0.0.1"], ice_servers=[], recording_key=key,
                heartbeat_s=0.5, node_ttl_s=2.0, store=s3_server.config(bucket))
            settings = replace(settings, identity=replace(
                IdentityConfig(), required=True, challenge="turn_left,turn_right").checked(),
                presence=settings.presence.with_(enabled=False))
            app = create_app(settings)
            b_server = TestServer(app, host="127.0.0.1")
            await b_server.start_server()
            b_url = str(b_server.make_url("")).rstrip("/")
            svc = app[IDENTITY_KEY]
            await svc.pool.warm()

            db = await Database.open(url)
            try:
                booking = await seed(db, load_settings(data_dir=tmp_path / "seed",
                                                       token_secret=SECRET, database_url=url),
                                     tokens)
            finally:
                await db.close()
            cid, did = booking.consultation_id, booking.doctor_id
            admin = {"Authorization": f"Bearer {tokens.issue(Role.ADMIN, 'admin-1')}"}
            async with aiohttp.ClientSession() as session:
                async with session.put(f"{a.url}/api/admin/doctors/{did}/face",
                                       data=OBAMA.read_bytes(),
                                       headers={**admin, "Content-Type": "image/jpeg"}) as r:
                    assert r.status == 200, await r.text()
                # B reads the photo A stored: from the bucket, not from A's disk.
                async with session.get(f"{b_url}/api/admin/doctors/{did}/face",
                                       headers=admin) as r:
                    assert r.status == 200 and await r.read() == OBAMA.read_bytes()

                guardian = CallClient(b_url, _token(booking.guardian_link), {}, session)
                doctor = CallClient(b_url, _token(booking.doctor_link),
                                    {"video": shots["obama2"]}, session)
                try:
                    await guardian.connect()  # first join, on B: hosted there
                    await doctor.connect()
                    assert guardian.redirects == [] and doctor.redirects == []
                    await doctor.start_media()
                    show(doctor, shots["obama2"])
                    verification = svc.verifications[cid]
                    _, asked = await do_actions(doctor, verification, shots)
                    verified = await doctor.expect("verify", timeout=30, step="verified")
                finally:
                    await guardian.close()
                    await doctor.close()
                assert asked == ["turn_left", "turn_right"]
                assert verified["distance"] < settings.identity.threshold

                # A serves the evidence B stored: the attempt from the database, the
                # thumbnail from the bucket.
                auditor = {"Authorization": f"Bearer {tokens.issue(Role.AUDITOR, 'audit-1')}"}
                async with session.get(f"{a.url}/api/consultations/{cid}/identity",
                                       headers=auditor) as r:
                    attempts = (await r.json())["attempts"]
                done = [x for x in attempts if x["outcome"] == "verified"]
                assert len(done) == 1 and done[0]["evidence_sha256"], attempts
                async with session.get(
                        f"{a.url}/api/consultations/{cid}/identity/{done[0]['id']}/evidence",
                        headers=auditor) as r:
                    assert r.status == 200
                    evidence = await r.read()
            assert hashlib.sha256(evidence).hexdigest() == done[0]["evidence_sha256"]
        finally:
            ice.use_host_addresses([])
            if b_server is not None:
                await b_server.close()
            a.stop()
