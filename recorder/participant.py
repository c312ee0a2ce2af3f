"""One participant's media into segments: timing on the consultation's clock, and when to cut.

Every packet is timed by the sender's own clock (its RTCP sender reports) plus one offset per
participant, never by its own arrival, which jitters and may be late (recorder/timing.py): so
audio and video, and both participants, sit on one clock. Until a sender report of each kind has
come (at the start, after a reconnect) the participant's packets wait, in memory, up to
REPORT_WAIT_S (at least SEED_S, to start the offset from the fastest of them); a kind whose
reports do not come by then is timed by arrival, and that is logged.

Segments are cut on a grid shared by both participants (every `segment_s` from the epoch), at the
first video key frame past the grid line so each segment starts decodable, and never before
MIN_SEGMENT_MS (one file, index row and event per segment: slivers cost as much as minutes).
A video gap longer than GAP_MS (a reconnect, a stalled camera) is recorded as an event and the
next media starts a new segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

import av
from aiortc.mediastreams import MediaStreamError

from core.calls import MediaFeed
from core.vp8 import is_vp8_keyframe

from .segment import OpenSegment
from .timing import Offset

log = logging.getLogger(__name__)

GAP_MS = 2000
FORCE_CUT_MS = 3000  # past the grid line with no key frame: cut anyway, video waits for one
MIN_SEGMENT_MS = 1000
# aiortc sends a sender report every 0.5-1.5 s, Chromium every ~1 s for video and every 2.5-7.5 s
# for audio: measured here (tests/test_browser_call.py), a guardian's rejoin held 2.4 s for
# Chromium's first audio report. A kind whose report is later than this is timed by arrival until
# one comes (then by it). At most this much of a participant's media is held in memory.
REPORT_WAIT_S = 4.0
# Packets held at least this long at a start, so the offset starts from the fastest of both
# kinds' first packets (25 audio and 15 video frames) rather than from whichever came first.
SEED_S = 0.5
HOLD_MAX = 1000  # packets (~12 s of both kinds): a backlog arriving at once is held no more
QUEUE = 512

Held = tuple[str, av.Packet, float, int]  # kind, packet, arrival (monotonic), upstream


class Consultation(Protocol):
    """What a participant needs of its consultation's recording (consultation.py), which builds
    it: the shared clock, segments on the shared grid, and where to report a gap or a failure."""

    epoch_mono: float  # the recording's epoch on time.monotonic()
    stopped: bool
    failed: str | None

    def open_segment(self, role: str, seq: int, t_ms: int) -> OpenSegment: ...

    def finish(self, seg: OpenSegment) -> None: ...

    def gap(self, role: str, from_ms: int, to_ms: int) -> None: ...

    def fail(self, error: str) -> None: ...


class ParticipantRecorder:
    def __init__(self, rec: Consultation, role: str,
                 sources: dict[str, MediaFeed], first_seq: int) -> None:
        self.rec = rec
        self.role = role
        self.sources = sources
        self.seq = first_seq
        self.segment: OpenSegment | None = None
        self.video_needs_keyframe = True
        self.last_video_ms: int | None = None
        self._offset = Offset(f"{role}'s sender clock")
        self._by_arrival: dict[str, Offset] = {}  # kinds without sender reports
        self._timed: dict[str, int] = {}  # the upstream each kind is timed for
        self._held: list[Held] = []
        self._subs = {kind: source.subscribe(QUEUE) for kind, source in sources.items()}
        self._tasks = [asyncio.create_task(self._pump(kind), name=f"record-{role}-{kind}")
                       for kind in self._subs]

    async def _pump(self, kind: str) -> None:
        sub = self._subs[kind]
        while True:
            try:
                packet = await sub.get()
            except MediaStreamError:
                return
            arrived, published = sub.times
            self.on_packet(kind, packet, arrived if arrived is not None else published,
                           sub.upstream)

    def on_packet(self, kind: str, packet: av.Packet, arrived: float | None = None,
                  upstream: int = 0) -> None:
        if self.rec.stopped or packet.pts is None:
            return
        now = time.monotonic()
        item = (kind, packet, arrived if arrived is not None else now, upstream)
        if self._held or self._timed.get(kind) != upstream:
            if not self._held and kind in self._timed:
                # A new upstream (a reconnect, maybe from another device): a new sender clock.
                self._offset = Offset(self._offset.what)
                self._by_arrival.clear()
            self._held.append(item)
            self._release()
            return
        self._write(*item)

    def _release(self, force: bool = False) -> None:
        """Time and write the held packets once each kind's upstream has sent a report (or
        once REPORT_WAIT_S of media is held, or at the end), the offset seeded from all."""
        latest = {kind: upstream for kind, _, _, upstream in self._held}
        missing = [kind for kind, upstream in latest.items()
                   if self.sources[kind].sender_time(0, upstream) is None]
        held_s = self._held[-1][2] - self._held[0][2]
        if not force and len(self._held) < HOLD_MAX and (
                held_s < SEED_S or (missing and held_s < REPORT_WAIT_S)):
            return
        log.info("recorder: %s: %d packets held %.2f s for sender reports (%s)", self.role,
                 len(self._held), held_s, ", ".join(
                     f"{kind} {'missing' if kind in missing else 'in'}" for kind in latest))
        for kind in missing:
            log.warning("recorder: %s: no %s sender report within %.0f s, timing it by arrival",
                        self.role, kind, REPORT_WAIT_S)
        self._timed.update(latest)
        held, self._held = self._held, []
        delays = [self._arrival_ms(arrived) - t * 1000 for kind, packet, arrived, upstream in held
                  if (t := self.sources[kind].sender_time(packet.pts, upstream)) is not None]
        if delays:
            self._offset.seed(min(delays))
        for item in held:
            self._write(*item)

    def _arrival_ms(self, arrived: float) -> float:
        return (arrived - self.rec.epoch_mono) * 1000

    def _time_ms(self, kind: str, packet: av.Packet, arrived: float, upstream: int) -> int:
        arrival_ms = self._arrival_ms(arrived)
        sent = self.sources[kind].sender_time(packet.pts, upstream)
        if sent is not None:
            return round(self._offset.place(arrival_ms, sent * 1000))
        by_arrival = self._by_arrival.get(kind)
        if by_arrival is None:
            by_arrival = self._by_arrival[kind] = Offset(f"{self.role}'s {kind} (by arrival)")
        return round(by_arrival.place(arrival_ms, packet.pts * 1000 * float(packet.time_base)))

    def _write(self, kind: str, packet: av.Packet, arrived: float, upstream: int) -> None:
        # Captured a little before the recording began (in flight when it did): at its start.
        t_ms = max(0, self._time_ms(kind, packet, arrived, upstream))
        data = bytes(packet)
        keyframe = kind == "video" and is_vp8_keyframe(data)
        seg = self.segment
        if seg is not None and seg.error is not None:
            self.rec.fail(seg.error)
            return
        if kind == "video":
            if self.last_video_ms is not None and t_ms - self.last_video_ms > GAP_MS:
                self.rec.gap(self.role, self.last_video_ms, t_ms)
                if seg is not None and seg.t_start_ms <= self.last_video_ms:
                    self.cut()  # (not one that audio after the gap opened: that one is new)
                    seg = None
            self.last_video_ms = t_ms
        if seg is not None:
            due = max(seg.boundary_ms, seg.t_start_ms + MIN_SEGMENT_MS)
            if t_ms >= due:
                if keyframe or t_ms >= due + FORCE_CUT_MS:
                    self.cut()
                    seg = None
                elif kind == "video":
                    self.sources["video"].request_keyframe()
        if kind == "video" and (seg is None or self.video_needs_keyframe):
            if not keyframe:
                self.sources["video"].request_keyframe()
                return  # a segment (or a cut) never starts with an undecodable picture
            self.video_needs_keyframe = False
        if seg is None:
            seg = self.segment = self.rec.open_segment(self.role, self.seq, t_ms)
            self.seq += 1
        seg.write(kind, data, t_ms)

    def cut(self) -> None:
        """Close the open segment (finished in the background); the next packet opens another."""
        seg, self.segment = self.segment, None
        self.video_needs_keyframe = True
        if seg is not None:
            self.rec.finish(seg)

    async def stop(self) -> None:
        for sub in self._subs.values():
            sub.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._held and self.rec.failed is None:
            self._release(force=True)
        self.cut()

