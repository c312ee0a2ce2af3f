"""A/V sync of recordings against the sender's own clock (issue 12 item 7).

The senders stamp every frame with its capture time and send sender reports by capture time,
as browsers do (bench/clip.py): a video frame and the audio captured with it carry the same
stamp, so in a recording in sync both kinds sit at the same place relative to their stamps (the
stamps do what a flash and a beep made together would, on every frame rather than every 2 s,
and without decoding). Late sending must not move one kind against the other.
"""

from __future__ import annotations

import asyncio

import pytest

from .node_fixtures import Node, node_settings, start_node
from .recording_helpers import (
    closed_segments,
    end_call,
    offset_s,
    play,
    recorder_of,
    start_call,
    track,
)

LATE_S = 0.1
TOLERANCE_S = 0.02  # the bound on the A/V offset, against the sender's own (zero)
MIN_SEGMENT_MS = 1000


@pytest.fixture
async def rec_node(tmp_path):
    async with start_node(node_settings(tmp_path / "node", rejoin_grace_s=3.0,
                                        recording_segment_s=4.0)) as n:
        yield n


async def record(node: Node, clips, late: str | None, late_for_s: float | None,
                 seconds: float) -> dict[str, dict[str, float]]:
    """A call whose guardian sends `late` media LATE_S late (only for the first `late_for_s`
    of the recording, or throughout); each side's offset per kind, in seconds."""

    def lag(guardian, doctor) -> None:
        if late is not None:
            track(guardian, late).lag_s = LATE_S

    cid, guardian, doctor = await start_call(node, clips, capture_clock=True, before_accept=lag)
    try:
        if late is not None and late_for_s is not None:
            await asyncio.sleep(late_for_s)  # media flows late this long (not a synchronisation)
            track(guardian, late).lag_s = 0.0
            seconds -= late_for_s
        await asyncio.sleep(seconds)  # the rest of the call
        await end_call(node, cid, guardian, doctor)
    finally:
        await guardian.close()
        await doctor.close()

    recorder = recorder_of(node)
    segs = await closed_segments(node, cid)
    offsets: dict[str, dict[str, float]] = {}
    for role in ("guardian", "doctor"):
        mine = sorted((s for s in segs if s.role == role), key=lambda s: s.seq)
        assert mine, role
        short = [(s.seq, s.duration_ms) for s in mine[:-1] if s.duration_ms < MIN_SEGMENT_MS]
        assert not short, f"{role}: segments under {MIN_SEGMENT_MS} ms before the end: {short}"
        played = [await asyncio.to_thread(play, recorder, s) for s in mine]
        stamps = {kind: [x for p in played for x in p.stamps[kind]] for kind in ("audio", "video")}
        assert len(stamps["video"]) > 100 and len(stamps["audio"]) > 200, role
        offsets[role] = {kind: offset_s(stamps[kind]) for kind in stamps}
    return offsets


def assert_in_sync(offsets: dict[str, dict[str, float]]) -> None:
    skews = {role: round((k["video"] - k["audio"]) * 1000, 1) for role, k in offsets.items()}
    print(f"A/V skew, ms (video - audio, against the sender's clock): {skews}")
    for role, by_kind in offsets.items():
        skew = by_kind["video"] - by_kind["audio"]
        assert abs(skew) < TOLERANCE_S, (
            f"{role}: video sits {skew * 1000:+.0f} ms from audio against the sender's clock "
            f"({offsets})")


@pytest.mark.timeout(90)
async def test_video_sent_late_throughout_is_recorded_in_sync(rec_node: Node, clips) -> None:
    assert_in_sync(await record(rec_node, clips, "video", None, 8.0))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ["video", "audio"])
async def test_first_packets_of_one_kind_late_do_not_shift_the_recording(
        rec_node: Node, clips, kind: str) -> None:
    assert_in_sync(await record(rec_node, clips, kind, 2.0, 8.0))
