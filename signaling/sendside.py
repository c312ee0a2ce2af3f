"""The node's own send-side estimate of a participant's downlink, from the transport-wide feedback
the browser sends about the node's video: what a browser sending directly learns of the far one.

Without it the node hears of a full downlink only from receiver reports (about one a second,
their loss judged over at least 20 packets) and the browser's REMB: after a drop from 2 Mbit/s to
400 kbit/s the router's buffer stayed full for a second or more, and the audio in it was lost
with the video (3.5 % concealed, bench.impair C; a direct call's sender, on this feedback, did no
better only because it also waits for its encoder). A queue shows in the packets' one-way delay
long before it overflows.

So the node numbers every video packet it sends on the transport (`SendSide.stamp`, from
signaling/pacer.py's transport, after the pacer: the send time is the real one), the browser
reports each one's arrival every 50-100 ms (signaling/twcc.py), and `DelayBound` compares each
packet's one-way delay with the least seen lately (the path's own delay, the two clocks' offset
included). A queue that stands above QUEUE_TARGET_S for STANDING_S is a full link, as in CoDel:
a key frame's burst passes, a link fed faster than it drains does not. It caps the participant's
downlink (`Link.delay_bound_bps`) at BETA times what arrived meanwhile (GoogCC's decrease), or
times the most a standing queue carried in the last CAPACITY_WINDOW_S; with the queue gone the
cap grows 8 % a second, never past 1.5 times what arrives, and is lifted once the loss-based
bound is the lower.

A browser that gets this feedback's sequence numbers sends it in place of its REMB (measured:
Chromium's receiver sent no REMB once the node's video carried them), so this is the
delay-based half of the node's estimate from then on.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import deque

from . import twcc
from .bandwidth import Link

QUEUE_TARGET_S = 0.06
STANDING_S = 0.2
MIN_PACKETS = 5  # a standing queue is judged on no fewer
CAPACITY_WINDOW_S = 3.0
BASE_WINDOW_S = 15.0  # the path's own delay: the least over this long
ACKED_WINDOW_S = 0.5  # what arrived, by the browser's clock
BETA = 0.85
GROWTH = 1.08  # a second
ACKED_GROWTH = 1.5
ACKED_SLACK_BPS = 10_000
DECREASE_EVERY_S = 0.3
HISTORY = 1 << 12  # packets whose send time is kept, by sequence number
CLOCK_JUMP_S = 30.0  # a delay this far from the base is a clock jump (the reference wrapped)
_ONE_BYTE = 0xBEDE
ONE_BYTE_IDS = range(1, 15)  # the ids a one-byte header extension can carry (RFC 8285)

log = logging.getLogger(__name__)


def stamp(data: bytes, extension_id: int, sequence: int) -> bytes:
    """`data`, a serialized RTP packet, with the transport-wide sequence number among its
    one-byte header extensions (RFC 8285). aiortc writes only one-byte extensions; ValueError
    for anything else."""
    first = data[0] if data else 0
    start = 12 + 4 * (first & 0x0F)
    if len(data) < start + (4 if first & 0x10 else 0):
        raise ValueError("the RTP packet is cut short")
    element = bytes(((extension_id << 4) | 1, (sequence >> 8) & 0xFF, sequence & 0xFF))
    if not first & 0x10:
        body, end = element, start
        first |= 0x10
    else:
        profile, words = struct.unpack_from("!HH", data, start)
        if profile != _ONE_BYTE:
            raise ValueError("the RTP packet's header extensions are not one-byte ones")
        end = start + 4 + 4 * words
        if end > len(data):
            raise ValueError("the RTP packet's header extensions are cut short")
        pos = used = start + 4
        while pos < end:  # to the end of the last element: the padding after it goes
            header = data[pos]
            if header == 0:
                pos += 1
                continue
            if header >> 4 == 15:
                break
            pos = used = pos + 2 + (header & 0x0F)
        if used > end:
            raise ValueError("an RTP header extension runs past the block")
        body = data[start + 4:used] + element
    body += b"\x00" * (-len(body) % 4)
    return (bytes((first,)) + data[1:start] + struct.pack("!HH", _ONE_BYTE, len(body) // 4)
            + body + data[end:])


class DelayBound:
    """The queue on one participant's downlink, from sent and arrival times, and the cap on
    their downlink it calls for (`Link.delay_bound_bps`)."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._base: deque[tuple[float, float]] = deque()  # (arrival, delay), increasing delay
        # (arrival, queue, bytes) over the last STANDING_S
        self._recent: deque[tuple[float, float, int]] = deque()
        self._acked: deque[tuple[float, int]] = deque()  # (arrival, bytes), last ACKED_WINDOW_S
        self._acked_bytes = 0
        self._full: deque[tuple[float, float]] = deque()  # (when, bit/s) a standing queue carried
        self._updated_at: float | None = None
        self._decreased_at = 0.0
        self.decreases = 0

    def update(self, packets: list[tuple[float, float, int]], now: float | None = None) -> None:
        """One feedback's packets that arrived: (sent, by the node's clock; arrival, by the
        browser's; bytes), in any order."""
        now = time.monotonic() if now is None else now
        for sent, arrival, size in sorted(packets, key=lambda p: p[1]):
            self._add(arrival, arrival - sent, size)
        elapsed = 0.0 if self._updated_at is None else min(now - self._updated_at, 1.0)
        self._updated_at = now
        recent = self._recent
        span = recent[-1][0] - recent[0][0] if recent else 0.0
        if len(recent) < MIN_PACKETS or span < STANDING_S / 2:
            return
        link = self._link
        queue = link.queue_s = min(queue for _, queue, _ in recent)
        if queue > QUEUE_TARGET_S:
            # The link was busy all along: what arrived is what it carries.
            carried = sum(size for _, _, size in recent) - recent[0][2]
            capacity = self._capacity(now, carried * 8 / span)
            if now - self._decreased_at >= DECREASE_EVERY_S:
                bound = link.delay_bound_bps
                cut = BETA * capacity
                link.delay_bound_bps = cut if bound is None else min(bound, cut)
                link.heavy_loss = True  # start-up (the loss bound's doubling) is over
                self._decreased_at = now
                self.decreases += 1
                log.debug("queue %.0f ms over %d packets in %.0f ms: carried %.0f, capacity "
                          "%.0f, bound %s -> %.0f", queue * 1000, len(recent), span * 1000,
                          carried * 8 / span, capacity, bound and int(bound),
                          link.delay_bound_bps)
        elif link.delay_bound_bps is not None:
            grown = link.delay_bound_bps * GROWTH ** elapsed
            acked = self.acked_bps()
            if acked is not None:
                grown = min(grown, max(link.delay_bound_bps,
                                       ACKED_GROWTH * acked + ACKED_SLACK_BPS))
            link.delay_bound_bps = None if grown >= link.loss_bound_bps else grown
            if link.delay_bound_bps is None:
                log.debug("queue gone: bound lifted at %.0f", grown)

    def _capacity(self, now: float, carried_bps: float) -> float:
        """The most a standing queue carried in the last CAPACITY_WINDOW_S, `carried_bps`
        included: while the node sends little (it drops frames, waiting for a key frame) the
        link carries little, and a cut by that alone spiralled down (to 59 kbit/s on a
        400 kbit/s link, bench.impair C)."""
        full = self._full
        full.append((now, carried_bps))
        while now - full[0][0] > CAPACITY_WINDOW_S:
            full.popleft()
        return max(bps for _, bps in full)

    def _add(self, arrival: float, delay: float, size: int) -> None:
        base = self._base
        if base and abs(delay - base[0][1]) > CLOCK_JUMP_S:
            base.clear()
            self._recent.clear()
        while base and base[-1][1] >= delay:
            base.pop()
        base.append((arrival, delay))
        while arrival - base[0][0] > BASE_WINDOW_S:
            base.popleft()
        recent = self._recent
        recent.append((arrival, delay - base[0][1], size))
        while arrival - recent[0][0] > STANDING_S:
            recent.popleft()
        acked = self._acked
        acked.append((arrival, size))
        self._acked_bytes += size
        while arrival - acked[0][0] > ACKED_WINDOW_S:
            self._acked_bytes -= acked.popleft()[1]

    def acked_bps(self) -> float | None:
        """What arrived over the last ACKED_WINDOW_S, by the browser's clock (None: too little
        to tell)."""
        acked = self._acked
        if len(acked) < 2:
            return None
        span = acked[-1][0] - acked[0][0]
        if span < ACKED_WINDOW_S / 2:
            return None
        return (self._acked_bytes - acked[0][1]) * 8 / span


class SendSide:
    """One video sender's transport-wide numbering, and what the browser's feedback on it says."""

    def __init__(self, link: Link, extension_id: int) -> None:
        if extension_id not in ONE_BYTE_IDS:
            raise ValueError("a one-byte header extension id is 1 to 14")
        self._extension_id = extension_id
        self._next = 0
        self._sent: list[tuple[int, float, int] | None] = [None] * HISTORY
        self.bound = DelayBound(link)
        self.feedbacks = 0
        self.malformed = 0
        self.unstamped = 0

    def stamp(self, data: bytes) -> bytes:
        """Number a video packet as it leaves (RTP only; the pacer's transport calls this). A
        packet it cannot number goes as it is: it is only missing from the estimate."""
        try:
            stamped = stamp(data, self._extension_id, self._next)
        except ValueError:
            self.unstamped += 1
            return data
        sequence = self._next
        self._next = (sequence + 1) & 0xFFFF
        self._sent[sequence % HISTORY] = (sequence, time.monotonic(), len(stamped))
        return stamped

    def feedback(self, fci: bytes) -> None:
        """A transport-wide feedback packet's FCI from the browser."""
        try:
            base, arrivals = twcc.parse(fci)
        except ValueError:
            self.malformed += 1
            return
        self.feedbacks += 1
        packets = []
        for offset, arrival in enumerate(arrivals):
            if arrival is None:
                continue
            sequence = (base + offset) & 0xFFFF
            sent = self._sent[sequence % HISTORY]
            if sent is not None and sent[0] == sequence:
                packets.append((sent[1], arrival / 1e6, sent[2]))
        if packets:
            self.bound.update(packets)
