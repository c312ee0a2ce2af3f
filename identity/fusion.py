"""One decision from several analysed frames, so one blurred frame neither passes nor fails a
doctor.

The median of the best `best` distances: with 3 of 5 frames that is the second best, so a single
lucky frame of an impostor (one low outlier) cannot pass alone, and a single frame smeared by
motion or a VP8 loss (one high outlier) cannot fail the registered doctor.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

BEST = 3


def fused_distance(distances: Sequence[float], best: int = BEST) -> float:
    """The median of the `best` smallest distances (of all of them when fewer)."""
    if not distances:
        raise ValueError("no distances to fuse")
    return statistics.median(sorted(distances)[:max(1, best)])
