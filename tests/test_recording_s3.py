"""A real call recorded into an S3-protocol bucket (moto's server, its own process) through an
in-process node: integrity, replay by Range over HTTP, and retention the bucket enforces."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from core.auth import Role
from recorder import index
from recorder.cli import verify_recordings

from .node_fixtures import node_settings, start_node
from .recording_helpers import (
    closed_segments,
    end_call,
    recorded_call,
    recorder_of,
    start_call,
    wait_for,
)
from .s3_fixtures import S3Server


def _auth(node, role: Role, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token(role, subject)}"}


@pytest.mark.timeout(90)
async def test_a_call_recorded_into_an_object_locked_bucket(tmp_path, clips,
                                                            s3_server: S3Server) -> None:
    bucket = s3_server.bucket(object_lock=True)
    settings = node_settings(tmp_path / "node", recording_segment_s=2.0,
                             store=s3_server.config(bucket, prefix="site-1/"))
    admin_s3 = s3_server.admin()
    async with start_node(settings) as node:
        async with node.session.get(node.url + "/readyz") as r:
            store = (await r.json())["recording_store"]
        assert store["backend"] == "s3" and store["object_lock"] is True, store

        cid = await recorded_call(node, clips, 3.0)
        recorder = recorder_of(node)
        segs = await closed_segments(node, cid)
        assert len(segs) >= 2
        listed = admin_s3.list_objects_v2(Bucket=bucket, Prefix="site-1/recordings/")
        assert sorted(o["Key"] for o in listed["Contents"]) == sorted(
            f"site-1/recordings/{s.storage_key}" for s in segs)
        assert not (settings.recordings_dir / "store" / cid).exists()  # nothing kept locally
        row = await index.get_recording(node.ctx.db, cid)
        assert row is not None and row.retain_until is not None
        for seg in segs:  # each kept by the bucket for three years from when it was stored
            head = admin_s3.head_object(Bucket=bucket, Key=f"site-1/recordings/{seg.storage_key}")
            assert head["ObjectLockMode"] == "COMPLIANCE"
            lock = head["ObjectLockRetainUntilDate"]  # S3 keeps whole seconds
            assert index.retain_until(seg.ended_at, 3) - timedelta(seconds=1) < lock
            assert lock <= row.retain_until

        report = await recorder.verify(cid)
        assert report.ok and report.checked == len(segs), report
        assert await verify_recordings(settings, cid) == 0  # the CLI opens the same bucket

        # Replay through the HTTP route, by Range, read from the bucket and decrypted.
        auditor = _auth(node, Role.AUDITOR, "audit-s3")
        async with aiohttp.ClientSession(node.url) as http:
            async with http.post(f"/api/recordings/{cid}/segments/{segs[0].id}/access",
                                 headers=auditor) as r:
                url = (await r.json())["url"]
            async with http.get(url) as r:
                assert r.status == 200
                whole = await r.read()
            assert whole[:4] == b"\x1a\x45\xdf\xa3" and len(whole) == segs[0].plain_size
            async with http.get(url, headers={"Range": "bytes=65000-70100"}) as r:
                assert r.status == 206 and await r.read() == whole[65000:70101]
            async with http.get(url, headers={"Range": "bytes=-300"}) as r:
                assert r.status == 206 and await r.read() == whole[-300:]

            # A legal hold is the objects' legal hold too, and lifting it lifts theirs.
            admin = _auth(node, Role.ADMIN, "admin-s3")

            def holds() -> set[str]:
                return {admin_s3.get_object_legal_hold(
                    Bucket=bucket, Key=f"site-1/recordings/{s.storage_key}"
                )["LegalHold"]["Status"] for s in segs}

            async with http.put(f"/api/recordings/{cid}/hold", json={"reason": "complaint"},
                                headers=admin) as r:
                assert r.status == 200
            assert holds() == {"ON"}
            async with http.delete(f"/api/recordings/{cid}/hold", json={"reason": "closed"},
                                   headers=admin) as r:
                assert r.status == 200
            assert holds() == {"OFF"}

        # The database says the recording may go; the bucket still keeps it: nothing is
        # marked purged, every refusal is an event, and the recording stays whole.
        past = datetime.now(UTC) - timedelta(days=1)
        await index.update_recording(node.ctx.db, cid, retain_until=past)
        assert await recorder.purge() == []
        assert [s.id for s in await closed_segments(node, cid)] == [s.id for s in segs]
        refused = [e for e in await node.events(cid) if e["kind"] == "recording.purge_refused"]
        assert sorted(e["data"]["segment"] for e in refused) == sorted(s.id for s in segs)
        assert all("COMPLIANCE retention until" in e["data"]["reason"] for e in refused)
        assert (await recorder.verify(cid)).ok


@pytest.mark.timeout(90)
async def test_a_hold_set_during_the_call_holds_the_segments_stored_after_it(
        tmp_path, clips, s3_server: S3Server) -> None:
    bucket = s3_server.bucket(object_lock=True)
    settings = node_settings(tmp_path / "node", recording_segment_s=1.0,
                             store=s3_server.config(bucket))
    async with start_node(settings) as node:
        cid, guardian, doctor = await start_call(node, clips)
        try:
            async with node.session.put(f"{node.url}/api/recordings/{cid}/hold",
                                        json={"reason": "complaint during the call"},
                                        headers=_auth(node, Role.ADMIN, "admin-s3")) as r:
                assert r.status == 200

            async def stored_after_hold() -> bool:
                kinds = [e["kind"] for e in await node.events(cid)]
                after = kinds[kinds.index("recording.hold.set"):]
                return after.count("recording.segment") >= 2

            await wait_for(stored_after_hold, 15, "two segments stored after the hold")
            await end_call(node, cid, guardian, doctor)
        finally:
            await guardian.close()
            await doctor.close()
        segs = await closed_segments(node, cid)
        admin_s3 = s3_server.admin()
        holds = [admin_s3.get_object_legal_hold(
            Bucket=bucket, Key=f"recordings/{s.storage_key}")["LegalHold"].get("Status")
            for s in segs]
        assert holds == ["ON"] * len(segs), holds


async def test_a_bucket_without_object_lock_is_said_at_start(tmp_path, s3_server: S3Server,
                                                             caplog) -> None:
    bucket = s3_server.bucket(object_lock=False)
    settings = node_settings(tmp_path / "node", store=s3_server.config(bucket))
    with caplog.at_level(logging.WARNING, logger="recorder.service"):
        async with start_node(settings) as node:
            async with node.session.get(node.url + "/readyz") as r:
                assert r.status == 200
                store = (await r.json())["recording_store"]
    assert store["backend"] == "s3" and store["object_lock"] is False
    assert f"bucket {bucket} has no Object Lock" in store["detail"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("has no Object Lock" in m and "database" in m for m in warned), warned


async def test_a_node_does_not_start_on_a_bucket_it_cannot_reach(tmp_path,
                                                                 s3_server: S3Server) -> None:
    settings = node_settings(tmp_path / "node", store=s3_server.config("tc-never-created"))
    with pytest.raises(Exception, match="NoSuchBucket"):
        async with start_node(settings):
            pass
