"""Live call statistics for ops.

Every few seconds each participant is summarised both ways: what the node receives from them
(`video`, `audio`: fps and kbit/s from counters the relay keeps anyway) and what the node sends
them (`sent`: fps, kbit/s and frames dropped because their downlink could not take them), the
bandwidth the node learned of their link (`bandwidth`: their downlink estimate, what they are asked
to send, the queue on their downlink), and round trip, loss and jitter from aiortc's RTCP-based
getStats (`network`). A participant whose link stays poor (`NetworkWatch`) is an ops alert and an
event, and so is its recovery: a call an auditor replays shows why the picture froze.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from aiortc import RTCPeerConnection

from .bandwidth import Link


class Counted(Protocol):
    frames: int
    bytes: int


@dataclass
class RateMeter:
    """Turns cumulative counters into rates between two readings."""

    frames: int = 0
    bytes: int = 0
    at: float = field(default_factory=time.monotonic)

    def read(self, counted: Counted) -> dict[str, float]:
        now = time.monotonic()
        span = max(now - self.at, 1e-6)
        if counted.frames < self.frames:  # a new peer connection counts from zero again
            self.frames = self.bytes = 0
        rates = {
            "fps": round((counted.frames - self.frames) / span, 1),
            "kbps": round((counted.bytes - self.bytes) * 8 / span / 1000, 1),
        }
        self.frames, self.bytes, self.at = counted.frames, counted.bytes, now
        return rates


def summarise(counters: Mapping[str, Counted],
              meters: dict[str, RateMeter]) -> dict[str, dict[str, float]]:
    return {kind: meters[kind].read(counted) for kind, counted in counters.items()}


def bandwidth(link: Link) -> dict[str, float | None]:
    """Their downlink estimate, what they are asked to send, and the queue on their downlink
    (from their browser's transport-wide feedback; None without it)."""
    return {"downlink_kbps": round(link.downlink() / 1000, 1),
            "asked_kbps": None if link.asked_bps is None else round(link.asked_bps / 1000, 1),
            "queue_ms": None if link.queue_s is None else round(link.queue_s * 1000, 1)}


async def network(pc: RTCPeerConnection) -> dict[str, dict[str, float | None]]:
    """Round trip, loss and jitter per kind, from aiortc's getStats (RTCP-based, cheap)."""
    out: dict[str, dict[str, float | None]] = {}
    for stat in (await pc.getStats()).values():
        if stat.type == "remote-inbound-rtp":  # what the browser reports of what we send it
            entry = out.setdefault(stat.kind, {})
            if stat.roundTripTime is not None:  # none until a report echoes a sender report
                entry["rtt_ms"] = round(stat.roundTripTime * 1000, 1)
            # RTCP's fraction lost is a fixed-point fraction of 256 (RFC 3550 §6.4.1).
            entry["loss_percent"] = round(stat.fractionLost * 100 / 256, 1)
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
    sent = (stats.get("sent") or {}).get("video")  # type: ignore[attr-defined]
    net = stats.get("network")
    problems = []
    if isinstance(video, dict) and video.get("fps", POOR_FPS) < POOR_FPS:
        problems.append(f"video {video['fps']} fps")
    # What the node sends them falls short of what it has for them: their downlink is the limit.
    if isinstance(sent, dict) and sent.get("fps", 0) < POOR_FPS <= sent.get("source_fps", 0):
        problems.append(f"receives video {sent['fps']} fps")
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
