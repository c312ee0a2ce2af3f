"""One decision from several analysed frames, so one blurred frame neither passes nor fails a
doctor.

The median of the best `best` distances: with 3 of 5 frames that is the second best, so a single
lucky frame of an impostor (one low outlier) cannot pass alone, and a single frame smeared by
motion or a VP8 loss (one high outlier) cannot fail the registered doctor.

`fused_verdict` stops early without changing the decision: it says whether the fused distance of
the frames seen so far and `still_to_come` more is on one side of the threshold whatever those
frames show (each 0 or each infinite). The fused distance is the second best, so two matching
frames decide a match, and four of five over the threshold a mismatch; two agreeing frames of
three decide a re-check, so the third (an encoding, ~0.16 s of a worker) is only spent when the
first two disagree. One frame never decides alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

BEST = 3


def fused_distance(distances: Sequence[float], best: int = BEST) -> float:
    """The median of the `best` smallest distances (of all of them when fewer)."""
    if not distances:
        raise ValueError("no distances to fuse")
    return statistics.median(sorted(distances)[:max(1, best)])


def fused_verdict(distances: Sequence[float], threshold: float, still_to_come: int = 0,
                  best: int = BEST) -> bool | None:
    """True (fused ≤ threshold) or False once sure whatever the next `still_to_come` frames'
    distances are; None while they could still decide either way."""
    if not distances and still_to_come <= 0:
        raise ValueError("no distances to fuse")
    if not distances:
        return None
    low = fused_distance([*distances, *[0.0] * still_to_come], best)
    high = fused_distance([*distances, *[math.inf] * still_to_come], best)
    if high <= threshold:
        return True
    if low > threshold:
        return False
    return None
