"""The object store fails under a recording call (issue 12 item 6).

- Unreachable for 30 s mid-call: moto's server process is frozen (SIGSTOP: connections are
  accepted by the kernel and never answered, the way a hung store or a black-holed route looks),
  then thawed with its objects intact. Segments wait in the spool and go up when it returns, in
  order; the call goes on; ops see the alert on their live stream; nothing is lost.
- A node SIGKILLed in the middle of an upload (slowed by a relay in front of the store, which
  drops its connections with the kill: on one host the kernel would otherwise still deliver
  what the dead process had written): readers see no partial object, and the restarted node
  sends its spool up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from bench.s3_server import moto_server
from core.auth import Role
from core.config.recording_store import StoreConfig
from core.objects.s3 import S3Storage
from core.store import EventLog

from .clinical_helpers import start_call as start_process_call
from .node_fixtures import SECRET, node_settings, start_node
from .node_process import booked_node
from .recording_helpers import closed_segments, end_call, recorder_of, start_call, wait_for
from .s3_fixtures import S3Server
from .tcp_proxy import TcpProxy

OUTAGE_S = 30.0
SEGMENT_S = 2.0


@contextlib.contextmanager
def own_moto():
    """A store of this test's own: it is frozen, which the suite's shared one must never be."""
    with moto_server() as server:
        yield S3Server(server.endpoint, server.process)


class OpsStream:
    """What ops see: the live stream (`/api/ops/stream`, server-sent events), its alerts kept."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.alerts: list[dict] = []
        self._task = asyncio.create_task(self._read(session, f"{url}/api/ops/stream?token={token}"))

    async def _read(self, session: aiohttp.ClientSession, url: str) -> None:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as r:
            assert r.status == 200
            async for line in r.content:
                if line.startswith(b"data: "):
                    message = json.loads(line[6:])
                    if message.get("type") == "alert":
                        self.alerts.append(message)

    def kinds(self) -> list[str]:
        return [a.get("kind", "") for a in self.alerts]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


@pytest.mark.timeout(180)
async def test_store_unreachable_for_30_s_mid_call_loses_nothing(tmp_path: Path, clips) -> None:
    with own_moto() as s3:
        bucket = s3.bucket(object_lock=True)
        # A hung store is called unreachable after 1 s to connect or 2 s without an answer,
        # one try; retried after 1, 2, 4, 4... s.
        store = s3.config(bucket, connect_timeout_s=1.0, read_timeout_s=2.0, max_attempts=1)
        settings = node_settings(tmp_path / "node", recording_segment_s=SEGMENT_S,
                                 recording_retry_max_s=4.0, store=store)
        async with start_node(settings) as node:
            ops = OpsStream(node.session, node.url, node.token(Role.OPS, "ops-1"))
            cid, guardian, doctor = await start_call(node, clips)
            started = time.monotonic()
            spool = settings.recordings_dir / "spool" / cid
            try:
                async def stored(n: int) -> bool:
                    return sum(e["kind"] == "recording.segment"
                               for e in await node.events(cid)) >= n

                await wait_for(lambda: stored(2), 15, "two segments stored before the outage")
                s3.process.send_signal(signal.SIGSTOP)
                frozen_at = time.monotonic()
                try:
                    async def alerted() -> bool:
                        return "recording.store_unreachable" in ops.kinds()

                    await wait_for(alerted, 15, "ops alerted that the store is unreachable")
                    alert_after = time.monotonic() - frozen_at
                    # The call goes on through the outage: media both ways, still active.
                    for side in (guardian, doctor):
                        await side.wait_frames("video", 60, timeout=15)
                        await side.wait_frames("audio", 100, timeout=15)
                    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - frozen_at)))
                    waiting = sorted(p.name for p in spool.glob("*.queued.enc"))
                    state = await node.ctx.lifecycle.state(cid)
                    live = await node.ctx.live.consultation(cid)
                finally:
                    s3.process.send_signal(signal.SIGCONT)
                thawed_at = time.monotonic()
                assert str(state) == "active"
                assert live is not None and live.get("recording") == "waiting", live
                # About 30 s of two participants' 2 s segments, each sealed in the spool.
                assert len(waiting) >= 20, waiting

                async def restored() -> bool:
                    return "recording.store_restored" in [e["kind"]
                                                          for e in await node.events(cid)]

                await wait_for(restored, 20, "the store seen back")
                restored_after = time.monotonic() - thawed_at
                await wait_for(_empty(spool, "*.queued.enc"), 30,
                               "the spool sent up after the outage")
                for side in (guardian, doctor):
                    await side.wait_frames("video", 30, timeout=15)
                await end_call(node, cid, guardian, doctor)
            finally:
                await guardian.close()
                await doctor.close()
                await ops.close()
            call_s = time.monotonic() - started

            events = await node.events(cid)
            kinds = [e["kind"] for e in events]
            assert "recording.failed" not in kinds, kinds
            down = [e["data"] for e in events if e["kind"] == "recording.store_unreachable"]
            up = [e["data"] for e in events if e["kind"] == "recording.store_restored"]
            assert len(down) == 1 and down[0]["waiting"] >= 1, down
            # Counted from the first upload that did not go through: the next segment to close
            # after the freeze, so up to a segment late.
            assert len(up) == 1 and OUTAGE_S - SEGMENT_S - 1 < up[0]["outage_s"] < OUTAGE_S + 10, up
            assert "recording.store_restored" in ops.kinds()
            alert = ops.alerts[ops.kinds().index("recording.store_unreachable")]
            assert alert["node"] == settings.node_id and cid in alert["consultations"], alert

            # Nothing lost: every segment, each role's numbered without a hole and contiguous
            # on the consultation clock across the outage, stored in the bucket and verified.
            segs = await closed_segments(node, cid)
            for role in ("doctor", "guardian"):
                mine = sorted((s for s in segs if s.role == role), key=lambda s: s.seq)
                assert [s.seq for s in mine] == list(range(len(mine)))
                assert all(s.state == "closed" for s in mine)
                for a, b in itertools.pairwise(mine):
                    assert abs(b.t_start_ms - (a.t_start_ms + a.duration_ms)) < 100, (
                        role, a.seq, a.t_start_ms, a.duration_ms, b.seq, b.t_start_ms)
                covered = sum(s.duration_ms for s in mine) / 1000
                assert abs(covered - call_s) < 3, (role, covered, call_s)
            listed = s3.admin().list_objects_v2(Bucket=bucket, Prefix=f"recordings/{cid}/")
            assert len(listed["Contents"]) == len(segs)
            report = await recorder_of(node).verify(cid)
            assert report.ok and report.checked == len(segs), report
            assert list(spool.glob("*")) == [], list(spool.glob("*"))
            print(json.dumps({"alert_after_s": round(alert_after, 1),
                              "restored_after_s": round(restored_after, 1),
                              "outage_s": up[0]["outage_s"], "segments": len(segs),
                              "waiting_at_end_of_outage": len(waiting)}))


def _empty(folder: Path, pattern: str):
    async def check() -> bool:
        return not await asyncio.to_thread(lambda: any(folder.glob(pattern)))
    return check


@pytest.mark.timeout(180)
async def test_node_killed_mid_upload_leaves_no_partial_object(tmp_path: Path, clips) -> None:
    with own_moto() as s3:
        bucket = s3.bucket(object_lock=False)
        proxy = TcpProxy(int(s3.endpoint.rsplit(":", 1)[1]))
        proxy.start()
        env = {**s3.env(bucket), "TC_S3_ENDPOINT": proxy.endpoint,
               "TC_RECORDING_SEGMENT_S": "3", "TC_REJOIN_GRACE": "2"}
        reader = S3Storage(StoreConfig(kind="s3", endpoint=s3.endpoint, bucket=bucket,
                                       access_key_id=env["TC_S3_ACCESS_KEY_ID"],
                                       secret_access_key=env["TC_S3_SECRET_ACCESS_KEY"]),
                           "recordings/")
        data = tmp_path / "data"
        try:
            async with booked_node(data, SECRET, **env) as booked:
                node, db, cid = booked.node, booked.db, booked.booking.consultation_id
                async with aiohttp.ClientSession() as session:
                    guardian = booked.client("guardian", clips, session)
                    doctor = booked.client("doctor", clips, session)
                    try:
                        await start_process_call(guardian, doctor)

                        async def stored() -> bool:
                            return sum(e.kind == "recording.segment"
                                       for e in await EventLog(db).events(cid)) >= 2

                        await wait_for(stored, 20, "two segments stored at full speed")
                        proxy.rate = 20_000  # bytes a second: a segment takes seconds to go up
                        segment_put = f"/{bucket}/recordings/{cid}/"

                        async def uploading() -> bool:
                            return any(p.path.startswith(segment_put)
                                       and 0.2 * p.length < p.sent < 0.8 * p.length
                                       for p in proxy.puts)

                        await wait_for(uploading, 30, "a segment's upload a fifth through", 0.02)
                        node.kill()
                        proxy.cut()  # its host gone with it: nothing it had sent goes on
                        cut = next(p for p in proxy.puts if p.path.startswith(segment_put)
                                   and p.sent < p.length)
                    finally:
                        await guardian.close()
                        await doctor.close()
                key = cut.path.removeprefix(f"/{bucket}/recordings/")

                async def relay_closed() -> bool:
                    return proxy.open_connections == 0

                await wait_for(relay_closed, 10, "the killed node's connections closed")
                # The store got a body cut short (else there is nothing to test).
                assert cut.sent < cut.length, (cut, "the whole body got out before the kill")
                # The store has seen the truncated request and its end: no object, for any
                # reader, neither by key nor in a listing, and no upload left half-made.
                assert await asyncio.to_thread(reader.size, key) is None
                assert key not in await asyncio.to_thread(reader.keys, f"{cid}/")
                uploads = s3.admin().list_multipart_uploads(Bucket=bucket)
                assert not uploads.get("Uploads"), uploads

                proxy.rate = None
                node.start()  # recovery sends the spool before the node answers its health
                events = await EventLog(db).events(cid)
                recovered = [e.data for e in events if e.kind == "recording.recovered"]
                role, seq = key.split("/")[1].removesuffix(".webm.enc").split("-")
                assert (role, int(seq)) in {(d["role"], d["seq"]) for d in recovered}, recovered
                size = await asyncio.to_thread(reader.size, key)
                row = next(d for d in recovered if (d["role"], d["seq"]) == (role, int(seq)))
                assert size == row["size"], (size, row)
                auditor = {"Authorization":
                           f"Bearer {booked.tokens.issue(Role.AUDITOR, 'audit-1')}"}
                async with aiohttp.ClientSession(node.url, headers=auditor) as http:
                    async with http.get(f"/api/recordings/{cid}/verify") as r:
                        report = await r.json()
                assert r.status == 200 and report["ok"] and report["checked"] >= 4, report
                assert not any((data / "recordings" / "spool" / cid).glob("*"))
                print(json.dumps({"cut_key": key, "cut_at_bytes": cut.sent,
                                  "of_bytes": cut.length, "checked": report["checked"]}))
        finally:
            proxy.close()

