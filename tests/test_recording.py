"""Recording a real call (aiortc clients through a real node): segments, sync, no codec ran."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from .codec_counter import count_codecs
from .node_fixtures import Node, node_settings, start_node
from .recording_helpers import (
    closed_segments,
    end_call,
    offset_s,
    play,
    recorder_of,
    start_call,
)

CALL_S = 20.0


@pytest.fixture
async def rec_node(tmp_path):
    async with start_node(node_settings(tmp_path / "node", rejoin_grace_s=3.0,
                                        recording_segment_s=8.0)) as n:
        yield n


@pytest.mark.timeout(90)
async def test_twenty_second_call_is_recorded_in_sync_without_any_codec(
        rec_node: Node, clips, monkeypatch) -> None:
    codecs = count_codecs(monkeypatch)

    node = rec_node
    cid, guardian, doctor = await start_call(node, clips)
    started = time.monotonic()
    try:
        await asyncio.sleep(CALL_S)  # the call itself: 20 s of media (not a synchronisation)
        await end_call(node, cid, guardian, doctor)
    finally:
        await guardian.close()
        await doctor.close()
    call_s = time.monotonic() - started

    recorder = recorder_of(node)
    segs = await closed_segments(node, cid)
    assert {s.role for s in segs} == {"doctor", "guardian"}
    for role in ("doctor", "guardian"):
        mine = sorted((s for s in segs if s.role == role), key=lambda s: s.seq)
        assert [s.seq for s in mine] == list(range(len(mine)))
        assert len(mine) >= 3, [(s.seq, s.t_start_ms, s.duration_ms) for s in mine]
        played = [await asyncio.to_thread(play, recorder, s) for s in mine]
        for seg, p in zip(mine, played, strict=True):
            assert p.packets.get("video", 0) > 0 and p.packets.get("audio", 0) > 0, seg
            assert abs(p.duration_s - seg.duration_ms / 1000) < 0.1
        total = sum(p.duration_s for p in played)
        assert abs(total - call_s) < 0.5, (role, total, call_s)
        # Contiguous: each segment starts where the previous one ended.
        for a, b in itertools.pairwise(mine):
            assert abs(b.t_start_ms - (a.t_start_ms + a.duration_ms)) < 100
        # A/V sync: the sender's stamps sit at the same place on the clock for both kinds.
        video = [x for p in played for x in p.stamps["video"]]
        audio = [x for p in played for x in p.stamps["audio"]]
        assert len(video) > 400 and len(audio) > 600
        drift = abs(offset_s(video) - offset_s(audio))
        assert drift < 0.02, f"{role}: audio/video offset differs by {drift * 1000:.0f} ms"
        # And no drift over the call: the first and last thirds agree.
        third = len(video) // 3
        assert abs(offset_s(video[:third]) - offset_s(video[-third:])) < 0.1

    # Both participants on one clock.
    sides = {role: [x for s in segs if s.role == role
                    for x in (await asyncio.to_thread(play, recorder, s)).stamps["video"]]
             for role in ("doctor", "guardian")}
    assert abs(offset_s(sides["doctor"]) - offset_s(sides["guardian"])) < 0.1

    assert codecs.calls == []
    assert codecs.video_contexts == []
    kinds = [e["kind"] for e in await node.events(cid)]
    assert kinds.count("recording.segment") == len(segs)
    assert "recording.started" in kinds and "recording.stopped" in kinds
    assert (await node.ctx.events.verify(cid)).ok
    report = await recorder.verify(cid)
    assert report.ok and report.checked == len(segs), report

