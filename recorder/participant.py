"""One participant's media into segments: timing on the consultation's clock, and when to cut.

Every packet is timed from its own RTP timestamp (the source's rebased pts), mapped once to the
wall clock when the first packet of that kind arrives; never from its arrival time, which jitters.
So audio and video, and both participants, sit on one clock (Janus's A/V drift came from timing
by arrival and from losing the mapping at gaps). A mapping that drifts far from the wall clock
(an RTP timestamp wrap, a sender restart) is re-anchored.

Segments are cut on a grid shared by both participants (every `segment_s` from the epoch), at the
first video key frame past the grid line so each segment starts decodable. A video gap longer
than GAP_MS (a reconnect, a stalled camera) is recorded as an event and the next media starts a
new segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import av
from aiortc.mediastreams import MediaStreamError

from signaling.media import MediaSource
from signaling.passthrough import is_vp8_keyframe

from .segment import OpenSegment

if TYPE_CHECKING:
    from .consultation import ConsultationRecording

GAP_MS = 2000
FORCE_CUT_MS = 3000  # past the grid line with no key frame: cut anyway, video waits for one
REANCHOR_MS = 5000
QUEUE = 512


class ParticipantRecorder:
    def __init__(self, rec: ConsultationRecording, role: str,
                 sources: dict[str, MediaSource], first_seq: int) -> None:
        self.rec = rec
        self.role = role
        self.sources = sources
        self.seq = first_seq
        self.segment: OpenSegment | None = None
        self.video_needs_keyframe = True
        self.last_video_ms: int | None = None
        self._anchors: dict[str, tuple[float, int, float]] = {}
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
            self.on_packet(kind, packet)

    def _time_ms(self, kind: str, packet: av.Packet, now: float) -> int:
        arrival_ms = (now - self.rec.epoch_mono) * 1000
        anchor = self._anchors.get(kind)
        if anchor is not None:
            t_ms = anchor[0] + (packet.pts - anchor[1]) * anchor[2]
            if abs(t_ms - arrival_ms) < REANCHOR_MS:
                return int(t_ms)
        self._anchors[kind] = (arrival_ms, packet.pts, 1000 * float(packet.time_base))
        return int(arrival_ms)

    def on_packet(self, kind: str, packet: av.Packet) -> None:
        if self.rec.stopped or packet.pts is None:
            return
        t_ms = self._time_ms(kind, packet, time.monotonic())
        data = bytes(packet)
        keyframe = kind == "video" and is_vp8_keyframe(data)
        seg = self.segment
        if seg is not None and seg.error is not None:
            self.rec.fail(seg.error)
            return
        if kind == "video":
            if self.last_video_ms is not None and t_ms - self.last_video_ms > GAP_MS:
                self.rec.gap(self.role, self.last_video_ms, t_ms)
                self.cut()
                seg = None
            self.last_video_ms = t_ms
        if seg is not None and t_ms >= seg.boundary_ms:
            if keyframe or t_ms >= seg.boundary_ms + FORCE_CUT_MS:
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
        self.cut()

