"""The node's receivers answer a browser's video with transport-wide feedback
(signaling/twcc.py), so that the browser's sender runs its own congestion controller on its leg
to the node, as it does in a direct call.

aiortc parses the transport-wide sequence number but neither negotiates it nor answers it. Its
own receive-side estimate (REMB) takes arrival times on the event loop and rises ~8 % a second;
Chromium's send-side controller, fed with per-packet arrival times, probes its way to the link's
rate in a second or two and tells queueing from loss on its own. The node stays the one to cap
that rate with the far side's downlink (REMB, signaling/bandwidth.py), which the browser honours
alongside this feedback.
"""

from __future__ import annotations

import asyncio
import time

from aiortc import RTCRtpReceiver

from . import passthrough
from .twcc import RawRtcp, feedback

INTERVAL_S = 0.05  # Chromium's own feedback interval at video rates
MAX_SPAN = 0x4000  # sequence numbers one feedback may cover


class FeedbackSender:
    """Collects one receiver's transport-wide sequence numbers and answers them every 50 ms."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self._receiver = receiver
        self._arrivals: dict[int, int] = {}  # unwrapped sequence → arrival, µs
        self._next: int | None = None  # first sequence not yet reported
        self._last = 0  # highest unwrapped sequence seen
        self._media_ssrc = 0
        self._count = 0
        self.sent = 0
        passthrough.on_rtp(receiver, self._on_rtp)
        self._task = asyncio.ensure_future(self._run())

    def _on_rtp(self, packet: object) -> None:
        sequence = packet.extensions.transport_sequence_number  # type: ignore[attr-defined]
        if sequence is None:
            return
        unwrapped = self._unwrap(sequence)
        if self._next is None or unwrapped - self._next > MAX_SPAN:
            self._next = unwrapped  # the first packet, or a jump no feedback should span
            self._arrivals.clear()
        if unwrapped >= self._next:
            self._arrivals[unwrapped] = time.monotonic_ns() // 1000
        self._media_ssrc = packet.ssrc  # type: ignore[attr-defined]

    def _unwrap(self, sequence: int) -> int:
        delta = (sequence - self._last) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        self._last += delta
        return self._last

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_S)
            if self._arrivals:
                self._send()

    def _send(self) -> None:
        assert self._next is not None
        end = max(self._arrivals) + 1
        base = self._next
        arrivals = [self._arrivals.pop(s, None) for s in range(base, end)]
        self._next = end
        ssrc = passthrough.rtcp_ssrc(self._receiver)
        if ssrc is None:
            return
        packet = feedback(ssrc, self._media_ssrc, self._count, base, arrivals)
        self._count += 1
        self.sent += 1
        passthrough.send_rtcp(self._receiver, RawRtcp(packet))

    def stop(self) -> None:
        self._task.cancel()
