"""Live call statistics for ops.

Every few seconds each participant's incoming media is summarised from counters the relay keeps
anyway (frames per second and kbit/s per kind), plus round trip, loss and jitter from aiortc's
RTCP-based getStats, and written to the live state, where the ops view and other nodes read it.
A participant whose link stays poor (`NetworkWatch`) is an ops alert and an event, and so is its
recovery: a call an auditor replays shows why the picture froze.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection

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
    return {kind: meters[kind].read(source) for kind, source in sources.items()}


async def network(pc: RTCPeerConnection) -> dict[str, dict[str, float | None]]:
    """Round trip, loss and jitter per kind, from aiortc's getStats (RTCP-based, cheap)."""
    out: dict[str, dict[str, float | None]] = {}
    for stat in (await pc.getStats()).values():
        if stat.type == "remote-inbound-rtp":  # what the browser reports of what we send it
            entry = out.setdefault(stat.kind, {})
            entry["rtt_ms"] = round(stat.roundTripTime * 1000, 1)
            entry["loss_percent"] = round(stat.fractionLost * 100, 1)
        elif stat.type == "inbound-rtp":  # what we receive from the browser
            entry = out.setdefault(stat.kind, {})
            clock = 90000 if stat.kind == "video" else 48000
            entry["jitter_ms"] = round(stat.jitter * 1000 / clock, 1)
            entry["packets_lost"] = stat.packetsLost
    return out


# The ops page marks a link poor at the same limits (static/ops.js).
POOR_FPS, POOR_LOSS_PERCENT, POOR_RTT_MS = 10.0, 5.0, 400.0


def poor_network(stats: dict[str, object]) -> list[str]:
    """What is poor in one participant's summary (empty when all is well)."""
    video = stats.get("video")
    net = stats.get("network")
    problems = []
    if isinstance(video, dict) and video.get("fps", POOR_FPS) < POOR_FPS:
        problems.append(f"video {video['fps']} fps")
    for kind, entry in (net.items() if isinstance(net, dict) else ()):
        loss, rtt = entry.get("loss_percent"), entry.get("rtt_ms")
        if loss is not None and loss > POOR_LOSS_PERCENT:
            problems.append(f"{kind} loss {loss}%")
        if rtt is not None and rtt > POOR_RTT_MS:
            problems.append(f"{kind} RTT {rtt} ms")
    return problems


@dataclass
class NetworkWatch:
    """Poor for `after` readings in a row → "poor"; good for `after` in a row → "recovered".
    One bad reading (a key frame burst, a GC pause) is not an alert."""

    after: int = 2
    poor: bool = False
    _streak: int = 0

    def observe(self, problems: list[str]) -> str | None:
        if bool(problems) == self.poor:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak < self.after:
            return None
        self.poor, self._streak = bool(problems), 0
        return "poor" if self.poor else "recovered"
