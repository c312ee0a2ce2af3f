"""Bandwidth adaptation through the relay: what a receiving browser can take bounds what the
sending browser is asked to send.

A direct call gets this for free: the receiver's feedback goes straight back to the sender. Here
each participant has a leg to the node, so the node joins the two. The sender's own leg is judged
by the sender's congestion controller from the node's transport-wide feedback (signaling/twcc.py);
the far side's leg reaches it as the node's REMB: min(the receiver's own REMB for its leg, the
configured cap), which the browser takes as a ceiling. Until the receiver has an estimate the cap
stands, so a call starts at full rate: Chromium takes a REMB above its start rate as its target
while it has seen no loss in its first two seconds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiortc import RTCRtpReceiver

from . import passthrough

# A participant's REMB older than this is not trusted (its browser sends one every second or so).
FRESH_S = 5.0
# How often the node reconsiders what to ask of a sender, and the most it stays silent.
TICK_S = 0.25
REPEAT_S = 1.0
# A change smaller than this is not worth a REMB before REPEAT_S.
CHANGE = 0.03


@dataclass
class Link:
    """What the node knows of one participant's connection to it."""

    downlink_bps: int | None = None  # the participant's REMB: what it can receive from the node
    downlink_at: float = 0.0
    asked_bps: int | None = None  # the last REMB the node sent it: what it is asked to send

    def report_downlink(self, bitrate: int) -> None:
        self.downlink_bps, self.downlink_at = bitrate, time.monotonic()

    def downlink(self) -> int | None:
        if self.downlink_bps is None or time.monotonic() - self.downlink_at > FRESH_S:
            return None
        return self.downlink_bps


def target(cap_bps: int, receiver_link: Link) -> int:
    """The most a sender should send: the cap, bounded by the receiver's downlink if known."""
    downlink = receiver_link.downlink()
    return cap_bps if downlink is None else min(cap_bps, downlink)


class RembSender:
    """Keeps one sender told of its target: at once when it falls, and every REPEAT_S anyway."""

    def __init__(self, receiver: RTCRtpReceiver, sender_link: Link, receiver_link: Link,
                 cap_bps: int) -> None:
        self._receiver = receiver
        passthrough.stop_own_remb(receiver)
        self._sender_link = sender_link
        self._receiver_link = receiver_link
        self._cap = cap_bps
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        sent_at = 0.0
        while True:
            bitrate = target(self._cap, self._receiver_link)
            last = self._sender_link.asked_bps
            now = time.monotonic()
            changed = last is None or abs(bitrate - last) > CHANGE * last
            if (changed or now - sent_at >= REPEAT_S) and passthrough.send_remb(
                    self._receiver, bitrate):
                self._sender_link.asked_bps, sent_at = bitrate, now
            await asyncio.sleep(TICK_S)

    def stop(self) -> None:
        self._task.cancel()
