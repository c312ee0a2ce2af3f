"""A fixed log-spaced histogram for latencies: one `log2` and three integer updates a sample, no
allocation, no lock (the loop is single-threaded), 321 counters whatever the traffic. Two
snapshots subtract, so a reader (bench/relay.py, an operator) gets the percentiles of any window
without the node keeping samples or being reset. The price of that is resolution: a bucket is
4.4 % wide (16 a doubling). Used for the node's forwarding delay (signaling/delay.py) and the
event loop's lag (core/metrics.py)."""

from __future__ import annotations

import math
from typing import Any

BUCKETS_PER_DOUBLING = 16
FLOOR_S = 1e-5  # bucket 0: under 10 µs
DOUBLINGS = 20  # the last bucket: from ~10.5 s up
SIZE = BUCKETS_PER_DOUBLING * DOUBLINGS + 1


def bucket(seconds: float) -> int:
    if seconds < FLOOR_S:
        return 0
    return min(SIZE - 1, int(math.log2(seconds / FLOOR_S) * BUCKETS_PER_DOUBLING) + 1)


def upper_edge(index: int) -> float:
    """The largest value bucket `index` holds, in seconds (the last one holds any)."""
    if index >= SIZE - 1:
        return math.inf
    return FLOOR_S * 2 ** (index / BUCKETS_PER_DOUBLING)


class LogHistogram:
    __slots__ = ("count", "counts", "max")

    def __init__(self) -> None:
        self.counts = [0] * SIZE
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bucket(seconds)] += 1
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def snapshot(self) -> dict[str, Any]:
        """Cumulative, JSON-ready: non-empty buckets by index, count, and the max ever seen."""
        return {"buckets": {str(i): c for i, c in enumerate(self.counts) if c},
                "count": self.count, "max_s": self.max}


def window(before: dict[str, Any] | None, after: dict[str, Any],
           quantiles: tuple[int, ...] = (50, 95)) -> dict[str, float | int | None]:
    """Percentiles (`p50`, ...) and max, in ms, of what was added between two snapshots of one
    histogram, and how many values that was (`count`).

    A percentile is its bucket's upper edge (at most 4.4 % high). The max is exact when the
    largest value ever seen fell in the window, else the upper edge of the window's top bucket.
    """
    old = before["buckets"] if before else {}
    counts = {int(i): c - old.get(i, 0) for i, c in after["buckets"].items()}
    counts = {i: c for i, c in sorted(counts.items()) if c > 0}
    total = sum(counts.values())
    if not total:
        return {**{f"p{q}": None for q in quantiles}, "max": None, "count": 0}

    def at(q: float) -> float:
        rank, seen = max(1, math.ceil(q / 100 * total)), 0
        for index, count in counts.items():
            seen += count
            if seen >= rank:
                return round(min(upper_edge(index), after["max_s"]) * 1000, 2)
        raise AssertionError("unreachable: the ranks add up to total")

    return {**{f"p{q}": at(q) for q in quantiles}, "max": at(100), "count": total}
