"""One master key for the deployment (issue 12, item 3): a segment stored by one node is
replayed by another with the same TC_RECORDING_KEY; a node without it says which key it lacks;
rotating the master key rewraps data keys and leaves the stored media and their hashes alone."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import aiohttp
import pytest

from core.auth import Role
from recorder import index
from recorder.cli import rewrap
from recorder.keys import key_id

from .node_fixtures import Node, node_settings, start_node
from .recording_helpers import closed_segments, play, recorded_call, recorder_of
from .s3_fixtures import S3Server


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _kid(key: str) -> str:
    return key_id(base64.b64decode(key))


async def _media(node: Node, cid: str, sid: str) -> tuple[int, bytes]:
    auditor = {"Authorization": f"Bearer {node.token(Role.AUDITOR, 'audit-1')}"}
    async with aiohttp.ClientSession(node.url, headers=auditor) as http:
        async with http.post(f"/api/recordings/{cid}/segments/{sid}/access") as r:
            url = (await r.json())["url"]
        async with http.get(url) as r:
            return r.status, await r.read()


@pytest.mark.timeout(120)
async def test_a_segment_one_node_stored_is_replayed_by_another_with_the_same_key(
        tmp_path, clips, s3_server: S3Server, monkeypatch) -> None:
    monkeypatch.delenv("TC_RECORDING_KEY", raising=False)
    key = _key()
    store = s3_server.config(s3_server.bucket(object_lock=True))
    db_url = f"sqlite+aiosqlite:///{(tmp_path / 'a').resolve()}/teleconsult.db"
    shared = dict(store=store, recording_segment_s=2.0, database_url=db_url)
    async with start_node(node_settings(tmp_path / "a", recording_key=key, **shared)) as a:
        cid = await recorded_call(a, clips)
        segs = await closed_segments(a, cid)
        assert segs and {s.key_id for s in segs} == {_kid(key)}
        assert all(s.wrapped_key for s in segs)
        events = [e for e in await a.events(cid) if e["kind"] == "recording.segment"]
        assert {e["data"]["key_id"] for e in events} == {_kid(key)}
        plain = b"".join(recorder_of(a).decryptor(segs[0]).read())

        # Node B: its own data dir and node id, the same database, bucket and master key.
        async with start_node(node_settings(tmp_path / "b", recording_key=key, node_id="b",
                                            **shared)) as b:
            status, body = await _media(b, cid, segs[0].id)
            assert status == 200 and body == plain
            async with b.session.get(b.url + "/readyz") as r:
                assert (await r.json())["recording_key"] == {"key_id": _kid(key),
                                                             "source": "environment"}

        # Node C was started without TC_RECORDING_KEY: a key of its own, said at start.
        async with start_node(node_settings(tmp_path / "c", node_id="c", **shared)) as c:
            async with c.session.get(c.url + "/readyz") as r:
                status_key = (await r.json())["recording_key"]
            assert status_key["source"] == "node" and "TC_RECORDING_KEY" in status_key[
                "warning"]
            status, body = await _media(c, cid, segs[0].id)
            error = json.loads(body)["error"]
            assert status == 500 and error["code"] == "recording_key_missing"
            assert error["key_id"] == _kid(key) and _kid(key) in error["message"]
            # Integrity needs no key: the stored bytes are hashed as they are.
            report = await recorder_of(c).verify(cid)
            assert report.ok and report.checked == len(segs), report.public()


@pytest.mark.timeout(120)
async def test_rotation_rewraps_data_keys_and_the_media_and_their_hashes_stay(
        tmp_path, clips, capsys) -> None:
    old, new = _key(), _key()
    data = tmp_path / "node"
    async with start_node(node_settings(data, recording_segment_s=2.0,
                                        recording_key=old)) as node:
        cid = await recorded_call(node, clips)
    root = data / "recordings" / "store"
    rotated = node_settings(data, recording_segment_s=2.0, recording_key=new,
                            recording_old_keys=[old])
    async with start_node(rotated) as node:
        before = {s.id: s for s in await closed_segments(node, cid)}
        stored = {sid: (root / s.storage_key).read_bytes() for sid, s in before.items()}
        assert {s.key_id for s in before.values()} == {_kid(old)}

        # Without the old key nothing can be rewrapped, and the report says which key.
        capsys.readouterr()
        assert await rewrap(node_settings(data, recording_key=new), []) == 1
        report = json.loads(capsys.readouterr().out)
        assert list(report["missing"]) == [_kid(old)]
        assert sorted(report["missing"][_kid(old)]) == sorted(before)
        assert report["rewrapped"] == 0

        assert await rewrap(rotated, []) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["rewrapped"] == len(before) and report["to"] == _kid(new)
        after = {s.id: s for s in await closed_segments(node, cid)}
        for sid, seg in after.items():
            was = before[sid]
            assert seg.key_id == _kid(new) and seg.wrapped_key != was.wrapped_key
            assert (seg.sha256, seg.size) == (was.sha256, was.size)
            raw = (root / seg.storage_key).read_bytes()
            assert raw == stored[sid] and hashlib.sha256(raw).hexdigest() == seg.sha256
        assert (await recorder_of(node).verify(cid)).ok
        [event] = [e for e in await node.events(cid) if e["kind"] == "recording.rewrapped"]
        assert event["data"] == {"to": _kid(new), "from": {_kid(old): len(before)},
                                 "segments": len(before)}
        assert event["actor"] == "system:cli"
        assert (await node.ctx.events.verify(cid)).ok
        assert await rewrap(rotated, []) == 0  # nothing left under the old key
        assert json.loads(capsys.readouterr().out)["rewrapped"] == 0

    async with start_node(node_settings(data, recording_key=new)) as node:  # the old key gone
        recorder = recorder_of(node)
        for seg in await closed_segments(node, cid):
            assert play(recorder, seg).packets.get("video", 0) > 0
        assert await index.segments_to_rewrap(node.ctx.db, _kid(new)) == []


async def test_a_spool_file_under_a_key_this_node_lacks_waits_for_it(tmp_path, clips) -> None:
    """Recovery never drops what it cannot read: the file stays until a node has its key."""
    from datetime import UTC, datetime

    from recorder.keys import KeyRing
    from recorder.recovery import recover_spool
    from recorder.segment import spool_name
    from recorder.webm import SegmentMuxer

    old, new = _key(), _key()
    data = tmp_path / "node"
    async with start_node(node_settings(data, recording_key=new)) as node:
        cid = (await node.book()).consultation_id
        await index.start_recording(node.ctx.db, cid, datetime.now(UTC))
        path = recorder_of(node).spool / cid / spool_name("guardian", 0, 0)
        muxer = SegmentMuxer(path, keys=KeyRing(old))  # what a killed node left, under `old`
        for i, packet in enumerate(clips["video"].packets):
            muxer.write("video", packet, round(i * 1000 / 30))
        muxer.abort()
        await recover_spool(recorder_of(node))
        assert path.exists() and await closed_segments(node, cid) == []
    async with start_node(node_settings(data, recording_key=new,
                                        recording_old_keys=[old])) as node:
        assert not path.exists()  # recovered at start
        [seg] = await closed_segments(node, cid)
        assert seg.state == "recovered" and seg.key_id == _kid(new)
        assert play(recorder_of(node), seg).packets["video"] > 0
