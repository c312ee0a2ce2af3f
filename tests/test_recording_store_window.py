"""A process killed between storing a closed segment and indexing it (issue 12, crash window).

The states below are exactly what such a kill leaves on disk, made with the recorder's own
closing steps; the restarted node's recovery (`recover_spool`, what `Recorder.open` runs) must
then leave a recording that verifies, losing nothing that was closed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from recorder import index, integrity
from recorder.recovery import recover_spool
from recorder.segment import OpenSegment, storage_key, store_blocking

from .node_fixtures import Node
from .recording_helpers import recorder_of


async def _closed_and_stored(node: Node, clips, seq: int = 1):
    """A real segment closed and stored as `_finish` does, up to (not including) its index row."""
    recorder = recorder_of(node)
    cid = (await node.book()).consultation_id
    epoch = datetime.now(UTC)
    await index.start_recording(node.ctx.db, cid, epoch)
    seg = OpenSegment(recorder.executor, recorder.spool, cid, "guardian", seq, 0, 10_000,
                      recorder.keys)
    for i, packet in enumerate(clips["video"].packets):
        seg.write("video", packet, round(i * 1000 / 30))
    for i, packet in enumerate(clips["audio"].packets):
        seg.write("audio", packet, i * 20)
    seg.flush()
    loop = asyncio.get_running_loop()
    stats = await loop.run_in_executor(recorder.executor, seg.close_blocking)
    assert stats is not None, seg.error
    stored = await loop.run_in_executor(recorder.executor, store_blocking, seg.path,
                                        storage_key(cid, "guardian", seq), recorder.storage,
                                        recorder.keys)
    return recorder, cid, epoch, seg, stats, stored


async def _verified(node: Node, cid: str) -> integrity.VerifyReport:
    return await integrity.verify(node.ctx.db, node.ctx.events, recorder_of(node).storage, cid)


async def test_a_kill_between_store_and_index_loses_nothing(node: Node, clips) -> None:
    recorder, cid, _, seg, stats, _ = await _closed_and_stored(node, clips)
    # The kill: no index row, no event. What was closed is still in the spool.
    assert await asyncio.to_thread(seg.path.exists), "working copy dropped before indexing"
    await recover_spool(recorder)
    report = await _verified(node, cid)
    assert report.ok and report.checked == 1, report.public()
    (row,) = await index.segments(node.ctx.db, cid)
    assert (row.state, row.video_packets) == ("recovered", stats.video_packets)
    assert not await asyncio.to_thread(lambda: list(seg.path.parent.iterdir()))
    kinds = [e["kind"] for e in await node.events(cid)]
    assert kinds.count("recording.recovered") == 1


async def test_a_kill_after_the_index_row_keeps_one_copy(node: Node, clips) -> None:
    recorder, cid, epoch, seg, stats, stored = await _closed_and_stored(node, clips)
    await recorder.index_segment(cid, epoch, "guardian", 1, 0, stats, stored, "closed")
    # The kill: indexed and logged, the working copy not yet dropped.
    await recover_spool(recorder)
    report = await _verified(node, cid)
    assert report.ok and report.checked == 1, report.public()
    assert [row.state for row in await index.segments(node.ctx.db, cid)] == ["closed"]
    assert not await asyncio.to_thread(seg.path.exists)


async def test_a_spool_waits_while_another_node_records_the_consultation(node: Node,
                                                                         clips) -> None:
    """A node restarted while the node that took its call over still records it: recovering now
    would take the number that node's recorder uses next, and its upload would overwrite the
    recovered segment. The files wait, and are recovered once that recording has ended."""
    recorder, cid, _, seg, stats, _ = await _closed_and_stored(node, clips)
    live = node.ctx.live
    assert await live.claim(cid, "node-b", 60) == "node-b"
    assert await recover_spool(recorder) == {cid}
    assert await index.segments(node.ctx.db, cid) == []
    assert await asyncio.to_thread(seg.path.exists)
    assert await live.release(cid, "node-b")
    assert await recover_spool(recorder, only={cid}) == set()
    (row,) = await index.segments(node.ctx.db, cid)
    assert (row.state, row.video_packets) == ("recovered", stats.video_packets)
    assert (await _verified(node, cid)).ok
