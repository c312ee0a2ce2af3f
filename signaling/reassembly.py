"""Reassemble encoded frames from RTP as soon as they are complete, for a relay.

aiortc's JitterBuffer knows a frame is complete only when the first packet of the next frame
arrives (a different RTP timestamp), so a receiver built on it holds every video frame one frame
interval (33 ms at 30 fps) and every Opus packet 20 ms; it was the whole of the node's forwarding
delay (signaling/delay.py). A relay has a better signal: a VP8 sender sets the RTP marker bit on
the last packet of a frame (RFC 7741 §3.1), and each Opus packet is a frame (RFC 7587 §4.2).

`PromptJitterBuffer` keeps aiortc's interface and its handling of misordered, duplicate and
overflowing input (`add`, `remove`, `smart_remove` are aiortc's, with the PLI it asks for), and
changes only when a frame leaves:

- video: once every packet from the frame's first to the one with the marker is in (a missing
  one is NACKed by the receiver's own NackGenerator, which does not depend on this buffer, and
  the retransmission fills the gap). A sender that sets no marker still gets aiortc's rule.
  When a retransmission completes several frames at once, the later ones wait in `ready` for
  the caller to take (aiortc's receiver takes one frame per packet; see passthrough.py's
  `release_promptly`), so the relay does not stay behind by the frames a gap held up.
- audio: each packet at once, in sequence order; one that comes after a later one is dropped
  (nothing retransmits audio, and waiting for a lost packet stalled audio until 16 more were in,
  and then kept it that far behind).
"""

from __future__ import annotations

from collections import deque

from aiortc.jitterbuffer import MAX_MISORDER, JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add


class PromptJitterBuffer(JitterBuffer):
    def __init__(self, capacity: int, is_video: bool) -> None:
        super().__init__(capacity=capacity, prefetch=0, is_video=is_video)
        self.ready: deque[JitterFrame] = deque()
        self.late = 0  # audio packets dropped for coming after a later one

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if self._is_video:
            return super().add(packet)
        sequence = packet.sequence_number
        if self._origin is not None:
            behind = uint16_add(self._origin, -sequence)
            if 0 < behind <= MAX_MISORDER:  # a later packet already left
                self.late += 1
                return False, None
        self._origin = uint16_add(sequence, 1)
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        frame = self._complete_frame()
        if frame is not None:
            while (later := self._complete_frame()) is not None:
                self.ready.append(later)
        return frame

    def _complete_frame(self) -> JitterFrame | None:
        """The frame at the origin if all of it is in; removed from the buffer."""
        packets, capacity, origin = self._packets, self._capacity, self._origin
        first = packets[origin % capacity]  # type: ignore[operator]
        if first is None:
            return None
        timestamp = first.timestamp
        for count in range(capacity):
            packet = packets[(origin + count) % capacity]  # type: ignore[operator]
            if packet is None:
                return None
            if packet.timestamp != timestamp:  # the frame ended without a marker
                break
            if packet.marker:
                count += 1
                break
        else:
            return None
        data = b"".join([packets[(origin + i) % capacity]._data  # type: ignore[union-attr,operator]
                         for i in range(count)])
        self.remove(count)
        return JitterFrame(data=data, timestamp=timestamp)
