"""Live call statistics for ops, from counters the relay keeps anyway (no getStats round trips).

Every few seconds each participant's incoming media is summarised (frames per second and kbit/s
per kind, frames dropped to slow subscribers) and written to the live state, where the ops view
and other nodes read it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .media import MediaSource


@dataclass
class RateMeter:
    """Turns a source's cumulative counters into rates between two readings."""

    frames: int = 0
    bytes: int = 0
    at: float = field(default_factory=time.monotonic)

    def read(self, source: MediaSource) -> dict[str, float]:
        now = time.monotonic()
        span = max(now - self.at, 1e-6)
        rates = {
            "fps": round((source.frames - self.frames) / span, 1),
            "kbps": round((source.bytes - self.bytes) * 8 / span / 1000, 1),
        }
        self.frames, self.bytes, self.at = source.frames, source.bytes, now
        return rates


def summarise(sources: dict[str, MediaSource], meters: dict[str, RateMeter]) -> dict[str, object]:
    return {kind: meters.setdefault(kind, RateMeter()).read(source)
            for kind, source in sources.items()}
