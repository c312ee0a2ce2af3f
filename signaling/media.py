"""Encoded media inside the node: one source per participant and kind, fanned out to subscribers.

A `MediaSource` outlives the participant's peer connections: when a participant reconnects, the new
receiver feeds the same source, and the source keeps its timeline continuous (pts rebased on the
wall clock), so the other side, the recorder and the identity checks see one stream.
Each upstream's RTCP sender reports are kept in the same rebased timeline (`sender_time`): what
the recorder times media by, on the sender's own clock, so audio and video stay together whichever
arrived late.
Subscribers never wait on each other: each has its own small buffer, and a video subscriber that
falls behind drops to the next key frame instead of growing a backlog.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from core.vp8 import is_vp8_keyframe

from .budget import SendBudget
from .delay import FORWARDING

KEYFRAME_REQUEST_INTERVAL_S = 1.0


class MediaSource:
    def __init__(self, kind: str, label: str) -> None:
        self.kind = kind
        self.label = label
        self.frames = 0
        self.bytes = 0
        self.keyframes = 0
        self._subscribers: set[Subscription] = set()
        self._held = False
        self._requester: Callable[[], bool] | None = None
        self._last_request = 0.0
        self._last_keyframe = 0.0
        self.requests_sent = 0
        self.requests_coalesced = 0
        self._offset: int | None = None
        self._last_pts = 0
        self._last_wall = 0.0
        self._clock_rate = 90000 if kind == "video" else 48000
        self.upstream = 0  # which upstream feeds the source: one more at each attach
        self._report: tuple[int, int, float] | None = None  # upstream, pts, sender's seconds

    @property
    def held(self) -> bool:
        """Relays to the other participant paused (the recorder and the checks go on)."""
        return self._held

    @held.setter
    def held(self, on: bool) -> None:
        # What the relays had queued is dropped at once: from the pause on, the other side gets
        # at most the frame its sender is sending (paced, a queue forms behind a key frame).
        self._held = on
        if on:
            for subscriber in self._subscribers:
                if subscriber.relay:
                    subscriber.drop_queued()

    def attach(self, requester: Callable[[], bool]) -> int:
        """A new upstream (receiver) feeds this source from now on; rebase its timestamps.
        Returns the upstream's number, for its `sender_report`s."""
        self._requester = requester
        self._offset = None
        self._last_request = self._last_keyframe = 0.0
        self.upstream += 1
        return self.upstream

    def sender_report(self, upstream: int, ntp_timestamp: int, frame_timestamp: int | None) -> None:
        """An RTCP sender report of `upstream`: its media's RTP time (`frame_timestamp`, in the
        receiver's frame timeline, see passthrough.frame_timestamp_of) was `ntp_timestamp` on
        the sender's clock. Kept in the source's rebased timeline; ignored from an upstream no
        longer attached, or before its first frame (the rebasing is not known yet)."""
        if upstream != self.upstream or frame_timestamp is None or self._offset is None:
            return
        seconds = (ntp_timestamp >> 32) + (ntp_timestamp & 0xFFFFFFFF) / (1 << 32)
        self._report = (upstream, frame_timestamp + self._offset, seconds)

    def sender_time(self, pts: int, upstream: int) -> float | None:
        """When the frame at `pts` (from `upstream`) was captured, in seconds on the sender's NTP
        clock, by the latest sender report; None until that upstream has sent one."""
        report = self._report
        if report is None or report[0] != upstream:
            return None
        return report[2] + (pts - report[1]) / self._clock_rate

    def detach(self) -> None:
        self._requester = None

    def publish(self, packet: av.Packet | None, arrived: float | None = None) -> None:
        """A frame from upstream; `arrived`: when its first RTP packet came (signaling/delay.py)."""
        if packet is None:  # the upstream receiver stopped; subscribers wait for the next one
            return
        now = time.monotonic()
        if self._offset is None:
            elapsed = int((now - self._last_wall) * self._clock_rate) if self.frames else 0
            self._offset = self._last_pts + elapsed - packet.pts
        if self._offset:
            packet.pts += self._offset
            packet.dts = packet.pts
        self._last_pts = packet.pts
        self._last_wall = now
        self.frames += 1
        self.bytes += packet.size
        keyframe = self.kind == "video" and is_vp8_keyframe(bytes(packet)[:1])
        if keyframe:
            self.keyframes += 1
            self._last_keyframe = now
        for subscriber in self._subscribers:
            if self._held and subscriber.relay:
                subscriber.dropped += 1
                subscriber._need_keyframe = self.kind == "video"  # resume on a whole picture
                continue
            subscriber._offer(packet, keyframe, arrived, now, self.upstream)

    def request_keyframe(self, fresh: bool = False) -> None:
        """Ask upstream for a key frame, coalescing requests.

        Every subscriber that lost a picture asks, and a receiver on a lossy link asks often; each
        key frame is several times a normal frame and sent into the same congested path. So one
        request stands until KEYFRAME_REQUEST_INTERVAL_S has passed since it, or since the last
        key frame went out (a receiver that asks just after one is usually still repairing it).

        `fresh`: a subscriber that starts now, which no earlier key frame reached. Only a request
        still waiting for its key frame stands for it; a key frame just sent to others does not
        (coalescing with it held a new receiver's first picture back by up to the interval).
        """
        if self.kind != "video" or self._requester is None:
            return
        now = time.monotonic()
        if fresh:  # only a request still waiting for its key frame stands
            standing = (self._last_request > self._last_keyframe
                        and now - self._last_request < KEYFRAME_REQUEST_INTERVAL_S)
        else:
            standing = (now - max(self._last_request, self._last_keyframe)
                        < KEYFRAME_REQUEST_INTERVAL_S)
        if standing:
            self.requests_coalesced += 1
            return
        if self._requester():
            self._last_request = now
            self.requests_sent += 1

    def subscribe(self, maxsize: int = 64, relay: bool = False) -> Subscription:
        """A subscriber from now on. A relay's stays dormant (takes nothing, asks for nothing)
        until its sender starts (`Subscription.start`): it is made at the participant's offer,
        and a key frame asked for then reaches the node before ICE and DTLS are up, is thrown
        away as stale, and made the request at the start wait out the coalescing interval
        (measured: the doctor's first relayed frame 0.7 s after DTLS, profile B)."""
        subscription = Subscription(self, maxsize, relay)
        self._subscribers.add(subscription)
        if not relay:
            self.request_keyframe()
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)


class Subscription:
    """A subscriber's view of a source: `await get()` returns the next encoded packet."""

    def __init__(self, source: MediaSource, maxsize: int, relay: bool = False) -> None:
        self.source = source
        self.maxsize = maxsize
        self.relay = relay  # to the other participant (held while `source.held`)
        self.dropped = 0
        self.times: tuple[float | None, float] = (None, 0.0)  # of the last packet get() returned
        self.upstream = 0  # and which upstream it came from
        self._queue: deque[tuple[av.Packet, float | None, float, int]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # asking for it is a getpid() call
        self._need_keyframe = source.kind == "video"
        self._closed = False
        self.dormant = relay  # until `start`

    def _offer(self, packet: av.Packet, keyframe: bool, arrived: float | None = None,
               published: float = 0.0, upstream: int = 0) -> None:
        if self.dormant:
            return
        if self._need_keyframe:
            if not keyframe:
                self.dropped += 1
                self.source.request_keyframe()
                return
            self._need_keyframe = False
        if len(self._queue) >= self.maxsize:
            self.dropped += len(self._queue)
            self._queue.clear()
            if self.source.kind == "video" and not keyframe:
                self._need_keyframe = True
                self.source.request_keyframe()
                return
        self._queue.append((packet, arrived, published, upstream))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> av.Packet:
        """The next packet; `times` then holds when it arrived and was published, `upstream`
        which upstream fed it."""
        while not self._queue:
            if self._closed:
                raise MediaStreamError
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        packet, arrived, published, self.upstream = self._queue.popleft()
        self.times = (arrived, published)
        return packet

    def resync(self, fresh: bool = False) -> None:
        """Drop what is queued and wait for the next key frame (asked for once)."""
        self.drop_queued()
        if self.source.kind == "video":
            self.source.request_keyframe(fresh)

    def drop_queued(self) -> None:
        """Drop what is queued; video resumes on a key frame."""
        self.dropped += len(self._queue)
        self._queue.clear()
        self._need_keyframe = self.source.kind == "video"

    def start(self) -> None:
        """The consumer starts: from the next key frame, asked for now as for a new receiver."""
        self.dormant = False
        self.resync(fresh=True)

    def close(self) -> None:
        self._closed = True
        self.source._unsubscribe(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class RelayTrack(MediaStreamTrack):
    """What the node sends a participant: the other participant's encoded frames, as av.Packet.

    aiortc's sender packetizes an av.Packet without encoding it. With a `budget` (video), a frame
    the participant's downlink cannot take in time is dropped here, with the frames that depend
    on it, rather than queued in the network or the node's socket.

    The sender asks for the next frame right after handing the last one's packets to the
    transport, so the start of `recv` is when the previous frame left: its forwarding delay
    (signaling/delay.py) is recorded there.
    """

    def __init__(self, source: MediaSource, budget: SendBudget | None = None) -> None:
        super().__init__()
        self.kind = source.kind
        self.subscription = source.subscribe(relay=True)
        self.budget = budget
        # called in the sender's task as it starts (signaling/pacer.py)
        self.on_start: Callable[[], None] | None = None
        self.frames = 0
        self.bytes = 0
        self._handed: tuple[float | None, float] | None = None  # the frame the sender has

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self._handed is not None:
            arrived, published = self._handed
            self._handed = None
            FORWARDING.record(self.kind, arrived, published, time.monotonic())
        if self.readyState != "live":
            raise MediaStreamError
        if self.subscription.dormant:
            # The sender starts once ICE and DTLS are up: only now can a key frame reach the
            # participant, made at the rate the node has asked of the sender for it since its
            # offer (signaling/bandwidth.py).
            self.subscription.start()
            if self.on_start is not None:
                self.on_start()
        try:
            while True:
                packet = await self.subscription.get()
                if self.budget is None or self.budget.admit(
                        packet.size, is_vp8_keyframe(bytes(packet)[:1])):
                    break
                self.subscription.dropped += 1
                self.subscription.resync()
        except MediaStreamError:
            self.stop()
            raise
        self.frames += 1
        self.bytes += packet.size
        self._handed = self.subscription.times
        return packet

    def stop(self) -> None:
        self.subscription.close()
        super().stop()
