"""The node's own forwarding delay (signaling/delay.py): the histogram, and a real call."""

from __future__ import annotations

import random

from core.auth import Role
from core.histogram import BUCKETS_PER_DOUBLING, LogHistogram, window
from signaling.delay import PARTS

from .node_fixtures import Node


def test_window_percentiles_match_the_exact_ones_within_a_bucket() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-4, 1) for _ in range(5000)]  # median ~18 ms, long tail
    histogram = LogHistogram()
    for value in values[:1000]:  # before the window
        histogram.add(value * 50)
    before = histogram.snapshot()
    for value in values[1000:]:
        histogram.add(value)
    result = window(before, histogram.snapshot(), quantiles=(50, 95))
    inside = sorted(values[1000:])
    width = 2 ** (1 / BUCKETS_PER_DOUBLING)
    for q in (50, 95):
        exact = inside[int(q / 100 * len(inside)) - 1] * 1000
        assert exact <= result[f"p{q}"] <= exact * width * 1.001, (q, exact, result)
    # The largest value ever seen came before the window: the window's max is its top bucket.
    assert inside[-1] * 1000 <= result["max"] <= inside[-1] * 1000 * width
    assert result["count"] == 4000


def test_empty_window_and_extremes() -> None:
    histogram = LogHistogram()
    assert window(None, histogram.snapshot())["count"] == 0
    histogram.add(0.0)
    histogram.add(1e6)  # beyond the last bucket: counted there, max exact
    result = window(None, histogram.snapshot())
    assert result["count"] == 2 and result["p50"] == 0.01 and result["max"] == 1e9


async def test_a_relayed_call_records_the_forwarding_delay(node: Node, clips) -> None:
    booking = await node.book()
    guardian = node.client(booking.guardian_link.split("#token=")[1], clips)
    doctor = node.client(booking.doctor_link.split("#token=")[1], clips)
    ops = {"Authorization": f"Bearer {node.tokens.issue(Role.OPS, 'test')}"}
    async with node.session.get(node.url + "/metrics/timing", headers=ops) as r:
        before = await r.json()
    try:
        for side in (guardian, doctor):
            await side.connect()
            await side.start_media()
        await doctor.wait_connected()
        await guardian.wait_connected()
        for side in (guardian, doctor):
            await side.wait_frames("video", 30)
            await side.wait_frames("audio", 25)
        async with node.session.get(node.url + "/metrics/timing", headers=ops) as r:
            after = await r.json()
    finally:
        await guardian.close()
        await doctor.close()
    for kind, frames in (("video", 60), ("audio", 50)):
        parts = {part: window(before["forwarding"][kind][part],
                                    after["forwarding"][kind][part])
                 for part in PARTS}
        assert parts["total"]["count"] >= frames, (kind, parts)
        # Nothing here waits long: under a second from first packet in to last packet out,
        # and the parts add up (each percentile of the sum is at least the parts' own).
        assert 0 < parts["total"]["p50"] < 1000, (kind, parts)
        assert parts["total"]["max"] >= parts["relay"]["p50"], (kind, parts)
    # A frame leaves once its last packet is in (signaling/reassembly.py), not when the next
    # frame's first packet comes (aiortc's own buffer: one frame interval, 33 ms video, 20 ms
    # audio). Its packets come in one burst from the loopback, so the hold is the time to take
    # them in: well under a frame interval, even on a loaded machine.
    for kind, interval_ms in (("video", 33), ("audio", 20)):
        hold = window(before["forwarding"][kind]["hold"], after["forwarding"][kind]["hold"])
        assert hold["p50"] < interval_ms / 3, (kind, hold)
    assert window(before["loop_lag"], after["loop_lag"])["count"] >= 1
