"""How much video the node may send one participant right now: a bounded queue, modelled.

The relay forwards frames as they come; the queue that forms when they come faster than a
participant's downlink takes them sits in the network (a router's buffer, then loss) or, when the
node's own link is the bottleneck, in the node's UDP socket, where asyncio buffers without limit
and the ICE consent checks wait behind it. Either way the picture freezes seconds late.

So the node keeps, per outgoing video stream, the queue it would build at the participant's
downlink rate (signaling/bandwidth.py's estimate, plus HEADROOM: `drain_bps`) and refuses a
frame that would take that queue past MAX_QUEUE_S (plus room for one key frame, which a
low-rate link needs more than MAX_QUEUE_S to carry). A refused frame makes the relay drop to the
next key frame: every frame after it references it. Key frames are never refused. Audio is never
limited here: it is small and what a call needs most.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .bandwidth import Link

log = logging.getLogger(__name__)

MAX_QUEUE_S = 0.5
# The queue drains a little faster than the estimate: a receiver's REMB sits below what its link
# carries (Chromium backs off to 85 % of what arrived), and an encoder overshoots its target.
HEADROOM = 1.25
KEYFRAME_ROOM = 1.5  # times the last key frame's size
QUEUE_FULL_S = 0.15
BURST_S = 0.1
BURST_SEEN_S = 0.3
MAX_SOCKET_BACKLOG = 64 * 1024  # bytes already stuck in the local socket: send no more video


@dataclass
class SendBudget:
    link: Link
    cap_bps: int
    socket_backlog: Callable[[], int] = lambda: 0
    queued: float = 0.0  # bytes, in the modelled queue
    at: float = field(default_factory=time.monotonic)
    last_keyframe: int = 0
    burst_until: float = 0.0  # until then a queue is the node's own last burst
    refused: int = 0

    def drain_bps(self) -> float:
        """How fast the modelled queue drains: the downlink estimate with HEADROOM, but never
        past a standing queue's cap (signaling/sendside.py). The headroom makes up for a
        receiver's estimate sitting below what its link carries; that cap is what the link
        carried while full, and headroom over it only refills the router's buffer."""
        rate = HEADROOM * min(self.cap_bps, self.link.downlink())
        delay_bound = self.link.delay_bound_bps
        return rate if delay_bound is None else min(rate, delay_bound)

    def congested(self, now: float | None = None) -> bool:
        """The queue on the participant's downlink, as their transport-wide feedback shows it
        (signaling/sendside.py), stands over QUEUE_FULL_S, and it is not the node's own last
        burst: more video, or a retransmission, would only push the audio behind it out of the
        router's buffer.

        The modelled queue alone allows half a second and a key frame and does not count
        retransmissions: after a drop to 400 kbit/s, with the cap at 85 % of what the link
        carried, the 250 ms buffer still stood full for 9 s and 933-1208 packets were lost in
        it, audio with them (6-8 % concealed); with this gate, 62-82 (0.4-0.8 %; bench.impair
        C). A frame that takes over BURST_S of the link, sent while the link was clear, makes
        a queue of its own, which is no news for the time it takes to drain and be seen
        (`burst_until`): gated on those too, the frames after each key frame were dropped and
        asked for the next key frame (27 in 5 minutes on a 400 kbit/s link, C)."""
        now = time.monotonic() if now is None else now
        queue = self.link.queue_s
        return queue is not None and queue > QUEUE_FULL_S and now >= self.burst_until

    def capacity_bps(self) -> int:
        """What the link carries, as its loss and queue say (the receiver's delay-based REMB left
        out): what signaling/pacer.py spreads bursts against. Paced at the REMB, which follows the
        rate the receiver gets, a drop's backlog held the stream back for seconds and the REMB
        fell with it, to 40 kbit/s on a 400 kbit/s link (bench.impair C)."""
        return min(self.cap_bps, self.link.capacity())

    def admit(self, size: int, keyframe: bool, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        rate = self.drain_bps() / 8
        self.queued = max(0.0, self.queued - rate * (now - self.at))
        self.at = now
        congested = self.congested(now)
        if keyframe:
            self.last_keyframe = size
        else:
            limit = rate * MAX_QUEUE_S + KEYFRAME_ROOM * self.last_keyframe
            if self.queued + size > limit or congested or \
                    self.socket_backlog() > MAX_SOCKET_BACKLOG:
                self.refused += 1
                log.debug("refused a %d-byte frame: %.0f of %.0f bytes queued, congested %s",
                          size, self.queued, limit, congested)
                return False
        drain = size / rate if rate > 0 else 0.0
        if drain > BURST_S and not congested:
            self.burst_until = now + drain + BURST_SEEN_S  # drained, then seen in the feedback
        self.queued += size
        self.link.sent_bytes += size
        return True
