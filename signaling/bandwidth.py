"""Bandwidth adaptation through the relay: what a receiving browser can take bounds what the
sending browser is asked to send.

A direct call gets this for free: the receiver's feedback goes straight back to the sender. Here
each participant has a leg to the node, so the node joins the two. The sender's own leg is judged
by the sender's congestion controller from the node's transport-wide feedback
(signaling/receiveside.py);
the far side's leg reaches it as the node's REMB, which the browser takes as a ceiling:
min(the configured cap, the receiver's downlink as the node learns it on its `Link`: its loss,
its REMB, and the queue its own transport-wide feedback shows, signaling/sendside.py). Alone in
the call a sender is asked for the cap; a new receiver's downlink starts at START_BPS, or lower
when its page measured a slower downlink before joining (`start_rate`), which Chromium takes as
its target at once while it has seen no loss in its first two seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from aiortc import RTCRtpReceiver

from . import passthrough

log = logging.getLogger(__name__)

# A participant's REMB older than this is not trusted (its browser sends one every second or so).
FRESH_S = 5.0
# How often the node reconsiders what to ask of a sender, and the most it stays silent.
TICK_S = 0.25
REPEAT_S = 1.0
# A change smaller than this is not worth a REMB before REPEAT_S.
CHANGE = 0.03


# The loss-based bound on a participant's downlink, after Chromium's send-side controller. It
# starts at START_BPS and doubles every second of start-up (like Chromium's start-up probing),
# which ends at the first heavy loss (over 10 %), or STARTUP_MAX_S after the first report. After
# that, over 10 % loss cuts it by half the loss (never below DELIVERED_SHARE of what got
# through); under that it grows no further than ACKED_GROWTH times what got through (GoogCC's
# cap on increase), doubling a second while the receiver's own REMB says its link takes more,
# else 8 % a second: from a burst's cut to 70 kbit/s 8 % a second alone took ~15 s back on a
# 300 kbit/s link (bench.impair B). Unlike Chromium's it does not hold between 2 and 10 %: on a
# radio link with a few percent of random loss a bound that cannot grow stays wherever a burst
# left it (measured: 58 kbit/s of video for a minute on a 300 kbit/s link with 3 % loss).
#
# The receiver's REMB is not trusted in start-up unless well under what gets through: a
# browser's receive-side estimate starts at its incoming rate and rises 8 % a second, so it says
# what the sender sends, not what the link takes.
#
# Why 800 kbit/s and not Chromium's own 300: the node's REMB caps the sender's controller, and a
# Chromium sender asked for less climbs back from there by itself at ~8 % a second, whatever the
# node asks later. Started at 300 kbit/s, a new doctor on B's 300 kbit/s link saw the first
# picture 1-3 s sooner (5.7-7.2 s after joining, against 7-8 s), but a clean call took 20 s
# and more to reach 1 Mbit/s (issue 11 wants 5 s). So a receiver starts at 800 kbit/s unless its
# page reported a slower downlink with its `join` (`downlink_kbps`: the pre-call test's, or how
# fast the page's own files arrived): then at REPORTED_SHARE of it, never under MIN_START_BPS.
START_BPS = 800_000
# Of a reported downlink, the share video starts at: the rest is for audio (~40 kbit/s with its
# headers), retransmissions (a few % on a lossy radio link) and the first key frame's burst, which
# is several times the mean rate for a second; the report itself is TCP's (a little optimistic
# against lossy UDP) and taken before the call. 0.7 of B's 300 kbit/s is 210 kbit/s, near what a
# direct call settles at there (173-180 kbit/s), against 800 that lost 40 % of the first second.
REPORTED_SHARE = 0.7
# Under this a report is not trusted to go lower: a page's load timed on a busy link reads low,
# and from a start-up bound too low Chromium's sender climbs back at ~8 % a second.
MIN_START_BPS = 150_000
ACKED_GROWTH = 1.5
STARTUP_MAX_S = 10.0
MIN_BPS = 60_000
FAST_GROWTH, SLOW_GROWTH = 2.0, 1.08  # a second
LOSS_HIGH = 0.10
DECREASE_EVERY_S = 0.3
# Loss is judged over no fewer packets than this, as Chromium's loss-based controller does.
MIN_LOSS_PACKETS = 20
# A cut never goes below this share of what got through (GoogCC's 0.85 of the acknowledged rate)
# while the link was full (over LOSS_HIGH lost) in the last CAPACITY_WINDOW_S: a full link's
# throughput is its capacity, and a reading taken while the node itself sent little says nothing
# of it. After a drop from 2 Mbit/s to 400 kbit/s the node sends little for a second or two (it
# drops the sender's too-large frames and waits for a key frame) while receiver reports still
# tell the burst's loss: floored by each reading alone, the bound fell from 555 to 74 kbit/s in
# 6 s on a link that carried 341 kbit/s, with the receiver's REMB at 281 (traced, profile C).
DELIVERED_SHARE = 0.85
CAPACITY_WINDOW_S = 3.0


@dataclass
class LossCounter:
    """Loss over at least MIN_LOSS_PACKETS packets, from receiver reports' cumulative counters.

    A report's own `fraction lost` covers only the packets since the previous report: at
    100 kbit/s that is a handful, so one random loss reads as 20–33 % and would cut the bound
    (measured: 3 % link loss read as 16–33 % every few seconds, driving a 300 kbit/s downlink's
    bound to 28 kbit/s).
    """

    lost: int | None = None  # cumulative, at the last report
    highest: int | None = None  # extended highest sequence number, at the last report
    pending_lost: int = 0
    pending_expected: int = 0

    def update(self, lost: int, highest: int) -> float | None:
        """The fraction lost once enough packets are counted; 0 while none is lost; else None."""
        last_lost, last_highest = self.lost, self.highest
        self.lost, self.highest = lost, highest
        if last_lost is None or last_highest is None:
            return None
        expected = highest - last_highest
        if expected <= 0:  # a repeated or reordered report
            return None
        self.pending_expected += expected
        self.pending_lost += lost - last_lost
        if self.pending_expected < MIN_LOSS_PACKETS:
            # Nothing lost yet is news enough (the bound may grow); a loss waits for company.
            return 0.0 if self.pending_lost == 0 else None
        fraction = min(1.0, max(0.0, self.pending_lost / self.pending_expected))
        self.pending_lost = self.pending_expected = 0
        return fraction


@dataclass
class Link:
    """What the node knows of one participant's connection to it.

    Their downlink estimate is min(their REMB, a bound from the loss they report). REMB alone is
    not enough: a browser's receive-side estimate is delay-based, and behind a router whose
    buffer stays full the delay stops growing while a third of the packets are lost.
    """

    remb_bps: int | None = None  # the participant's REMB: what it can receive from the node
    remb_at: float = 0.0
    loss_bound_bps: float = START_BPS
    start_bps: int = START_BPS  # where a new peer connection's bound starts (`start_rate`)
    loss_at: float | None = None
    heavy_loss: bool = False  # seen over LOSS_HIGH on this peer connection: start-up is over
    first_report_at: float | None = None
    delivered_bps: float | None = None  # video that got through, at the last loss reading
    decreased_at: float = 0.0
    asked_bps: int | None = None  # the last REMB the node sent it: what it is asked to send
    connected: bool = False  # has a peer connection with the node
    losses: LossCounter = field(default_factory=LossCounter)
    # Video bytes the node has sent this participant, and their count at the last loss reading:
    # with the loss, what got through in between is the floor under a cut. Without it a sudden
    # drop (2 Mbit/s to 400 kbit/s) read as 70 % loss several reports in a row and the bound fell
    # to 50 kbit/s on a 400 kbit/s link, twenty seconds from recovering (measured, profile C).
    sent_bytes: int = 0
    sent_at_reading: tuple[float, int] | None = None
    # (when, bit/s) delivered while over LOSS_HIGH was lost, the last CAPACITY_WINDOW_S
    saturated: deque[tuple[float, float]] = field(default_factory=deque)
    # A standing queue's cap, from the browser's transport-wide feedback (signaling/sendside.py);
    # None while there is none, or without that feedback.
    delay_bound_bps: float | None = None
    queue_s: float | None = None  # the standing queue that feedback shows (None: no feedback)

    def restart(self) -> None:
        """A new peer connection: its downlink is learned anew, from the start rate."""
        self.loss_bound_bps, self.loss_at, self.heavy_loss = self.start_bps, None, False
        self.first_report_at = self.delivered_bps = None
        self.remb_bps, self.connected = None, True
        self.losses, self.sent_at_reading = LossCounter(), None
        self.saturated.clear()
        self.delay_bound_bps = self.queue_s = None

    def reported_before_media(self, downlink_kbps: int | None) -> None:
        """What the participant's page measured of its downlink before this join (None: nothing):
        where its next peer connection's bound starts."""
        self.start_bps = start_rate(downlink_kbps)

    def report_downlink(self, bitrate: int) -> None:
        self.remb_bps, self.remb_at = bitrate, time.monotonic()

    def report_counters(self, lost: int, highest: int, cap_bps: int,
                        now: float | None = None) -> None:
        """A receiver report on the video the node sends this participant: cumulative lost,
        extended highest sequence number."""
        fraction = self.losses.update(lost, highest)
        if fraction is not None:
            self.report_loss(fraction, cap_bps, now)

    def report_loss(self, fraction: float, cap_bps: int, now: float | None = None) -> None:
        """The fraction lost over the last MIN_LOSS_PACKETS or more packets."""
        now = time.monotonic() if now is None else now
        if self.first_report_at is None:
            self.first_report_at = now
        delivered: float | None = None
        if self.sent_at_reading is not None and now > self.sent_at_reading[0]:
            then, sent = self.sent_at_reading
            delivered = (self.sent_bytes - sent) * 8 / (now - then) * (1 - fraction)
        self.sent_at_reading = (now, self.sent_bytes)
        if delivered is not None:
            self.delivered_bps = delivered
        if fraction > LOSS_HIGH:
            self.heavy_loss = True
            capacity = self._capacity(now, delivered)
            if now - self.decreased_at >= DECREASE_EVERY_S:
                cut = max(self.loss_bound_bps * (1 - fraction / 2), DELIVERED_SHARE * capacity)
                self.loss_bound_bps = max(MIN_BPS, min(self.loss_bound_bps, cut))
                self.decreased_at = now
        elif self.loss_at is not None:
            # After a cut, the receiver's delay-based REMB above the bound says the link has
            # room again: 8 % a second took ~15 s back from a burst's cut (B, measured).
            remb = self.fresh_remb(now)
            start_up = self.start_up(now)
            fast = start_up or (remb is not None and remb > self.loss_bound_bps)
            growth = FAST_GROWTH if fast else SLOW_GROWTH
            # Reports come every MIN_LOSS_PACKETS: at a low rate, seconds apart.
            elapsed = min(now - self.loss_at, 2.0)
            grown = self.loss_bound_bps * growth ** elapsed
            if delivered is not None and not start_up:  # not past what the link has carried
                grown = min(grown, max(self.loss_bound_bps, ACKED_GROWTH * delivered))
            self.loss_bound_bps = min(cap_bps, grown)
        self.loss_at = now

    def _capacity(self, now: float, delivered: float | None) -> float:
        """The most a full link delivered in the last CAPACITY_WINDOW_S, this reading's
        included (0 if none)."""
        samples = self.saturated
        if delivered is not None:
            samples.append((now, delivered))
        while samples and now - samples[0][0] > CAPACITY_WINDOW_S:
            samples.popleft()
        return max((bps for _, bps in samples), default=0.0)

    def capacity(self) -> int:
        """What the link carries, as its loss and queue say (the receiver's REMB left out)."""
        if self.delay_bound_bps is None:
            return int(self.loss_bound_bps)
        return int(min(self.loss_bound_bps, self.delay_bound_bps))

    def downlink(self) -> int:
        now = time.monotonic()
        bound = self.capacity()
        remb = self.fresh_remb(now)
        if remb is not None and not self._remb_only_echoes_the_sender(remb, now):
            bound = min(bound, remb)
        return bound

    def fresh_remb(self, now: float) -> int | None:
        """The participant's REMB, unless it is older than FRESH_S."""
        if self.remb_bps is not None and now - self.remb_at <= FRESH_S:
            return self.remb_bps
        return None

    def _remb_only_echoes_the_sender(self, remb: int, now: float) -> bool:
        """In start-up a REMB near or above what gets through says what the sender sends,
        not what the link takes; one well under it is congestion, and counts."""
        return (self.start_up(now) and self.delivered_bps is not None
                and remb >= DELIVERED_SHARE * self.delivered_bps)

    def start_up(self, now: float) -> bool:
        """Until the first heavy loss, or STARTUP_MAX_S after the first report."""
        return not self.heavy_loss and (
            self.first_report_at is None or now - self.first_report_at < STARTUP_MAX_S)


def start_rate(downlink_kbps: int | None) -> int:
    """A new receiver's first bound: START_BPS unless its page measured a slower downlink."""
    if downlink_kbps is None:
        return START_BPS
    return int(min(START_BPS, max(MIN_START_BPS, REPORTED_SHARE * downlink_kbps * 1000)))


def target(cap_bps: int, receiver_link: Link) -> int:
    """The most a sender should send: the cap, bounded by the receiver's downlink while there is
    a receiver (alone in the call, the sender is only recorded and checked)."""
    if not receiver_link.connected:
        return cap_bps
    return min(cap_bps, receiver_link.downlink())


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
                if changed:
                    link = self._receiver_link
                    log.debug("remb %d: loss bound %d, receiver's remb %s, delivered %s",
                              bitrate, link.loss_bound_bps, link.fresh_remb(now),
                              link.delivered_bps and int(link.delivered_bps))
            await asyncio.sleep(TICK_S)

    def stop(self) -> None:
        self._task.cancel()
