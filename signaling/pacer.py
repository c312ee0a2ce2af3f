"""Spread a relayed video stream's packets in time, as a browser's pacer does.

aiortc sends all of a frame's packets back to back. A browser sending directly spreads them at
PACE_FACTOR times its estimate of the link (Chromium's pacing factor; here the loss-based
capacity, see SendBudget.capacity_bps: the send budget does the congestion control), so a key
frame several times the size of a router's buffer goes out over a few hundred milliseconds
instead of in one burst that overflows that buffer. Through the relay without it, every key
frame on a 400 kbit/s link with a 250 ms drop-tail buffer (12.5 kB) lost its tail, was NACKed,
retransmitted into the same full buffer, and held the picture frozen; the loss reports of those
bursts kept cutting the bound on the doctor's downlink for seconds after a drop (traced,
bench.impair C).

The pacer stands in front of the sender's DTLS transport (`install`): a packet of the sender's own
RTP task waits until the bytes before it, less a short burst, have drained at the paced rate.
Anything else (RTCP, and retransmissions, which aiortc sends from the RTCP handler of the shared
transport: a sleep there would hold every incoming packet behind it) goes at once, and counts.
Every RTP packet is handed to `stamp` (signaling/sendside.py) as it leaves, after any wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import is_rtcp

# Chromium's pacing factor: a packet leaves at most this much faster than the link estimate.
PACE_FACTOR = 2.5
# What may go back to back before the pacer holds a packet: a normal frame at a good rate passes
# without a timer, a key frame on a slow link is spread.
BURST_S = 0.02
MAX_WAIT_S = 0.25
_TRANSPORT_ATTR = "_RTCRtpSender__transport"
_TASK_ATTR = "_RTCRtpSender__rtp_task"
Stamp = Callable[[bytes], bytes]


class Pacer:
    """The paced rate's bookkeeping for one sender: bytes not yet drained, and when."""

    def __init__(self, rate_bps: Callable[[], int]) -> None:
        self._rate_bps = rate_bps
        self._level = 0.0  # bytes
        self._at = time.monotonic()
        self.held = 0  # packets that waited

    def wait_s(self, now: float) -> float:
        """How long a packet sent now should wait first (0: go)."""
        rate = PACE_FACTOR * self._rate_bps() / 8
        if rate <= 0:
            return 0.0
        # What was sent at an earlier, higher rate is owed for at most MAX_WAIT_S at this one:
        # a drop's backlog, paced whole at the new rate, would hold the stream back for seconds
        # (measured with the REMB-bound rate: 40 kbit/s on a 400 kbit/s link, bench.impair C).
        self._level = min(max(0.0, self._level - rate * (now - self._at)),
                          rate * (MAX_WAIT_S + BURST_S))
        self._at = now
        return max(0.0, self._level / rate - BURST_S)

    def sent(self, size: int) -> None:
        self._level += size


class PacedTransport:
    """The sender's view of its DTLS transport, with `_send_rtp` paced; all else is the
    transport's own."""

    def __init__(self, dtls: RTCDtlsTransport, pacer: Pacer, task: asyncio.Future[Any] | None,
                 loop: asyncio.AbstractEventLoop, stamp: Stamp | None = None) -> None:
        self._dtls = dtls
        self._pacer = pacer
        self._task = task
        self._loop = loop
        self._stamp = stamp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dtls, name)

    async def _send_rtp(self, data: bytes) -> None:
        pacer = self._pacer
        if not is_rtcp(data):
            if asyncio.current_task(self._loop) is self._task:
                wait = pacer.wait_s(time.monotonic())
                if wait > 0:
                    pacer.held += 1
                    await asyncio.sleep(wait)
                    pacer.wait_s(time.monotonic())  # drain what went meanwhile
            if self._stamp is not None:
                data = self._stamp(data)
            pacer.sent(len(data))
        await self._dtls._send_rtp(data)


def install(sender: RTCRtpSender, pacer: Pacer, stamp: Stamp | None = None) -> None:
    """Pace `sender`'s packets from now on, and `stamp` each RTP packet as it leaves. Call from
    its running RTP task (the relay track's `recv`), when its transport is final (after
    bundling)."""
    dtls = getattr(sender, _TRANSPORT_ATTR, None)
    if isinstance(dtls, PacedTransport):
        return
    if not isinstance(dtls, RTCDtlsTransport) or not callable(
            getattr(dtls, "_send_rtp", None)) or not hasattr(sender, _TASK_ATTR):
        raise RuntimeError("aiortc's RTCRtpSender no longer has the DTLS transport and RTP task "
                           "signaling/pacer.py stands in front of; check it against the "
                           "installed aiortc")
    loop = asyncio.get_running_loop()
    setattr(sender, _TRANSPORT_ATTR,
            PacedTransport(dtls, pacer, getattr(sender, _TASK_ATTR), loop, stamp))
