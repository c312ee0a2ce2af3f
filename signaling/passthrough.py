"""Receive encoded frames from aiortc without decoding them.

aiortc's RTCRtpReceiver re-assembles each encoded frame on the event loop, then hands it to a
decoder thread through a private queue. For the node's own peers we swap that queue for one that
turns the frame into an `av.Packet` and gives it straight to a sink, on the loop: no decoder, no
thread hop, no per-frame `run_coroutine_threadsafe`. The decoder thread aiortc still starts exits
at once (see `_decoder_worker`).

This leans on private details of aiortc (pinned in pyproject.toml): the receiver's
`__decoder_queue` and `__jitter_buffer` attributes and the module-level `decoder_worker`.
`install` checks them and raises if one is gone, and tests/test_passthrough.py fails loudly
after an upgrade that breaks them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

from .background import spawn

Sink = Callable[[av.Packet | None], None]

_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_original_worker = rtcrtpreceiver.decoder_worker


class PassthroughQueue:
    """Stands in for the receiver's decoder queue: `put` is called on the loop for each frame."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._time_bases: dict[int, Fraction] = {}

    def put(self, item: tuple[Any, Any] | None) -> None:
        if item is None:  # the receiver stopped
            self.sink(None)
            return
        codec, frame = item
        time_base = self._time_bases.get(codec.clockRate)
        if time_base is None:
            time_base = self._time_bases[codec.clockRate] = Fraction(1, codec.clockRate)
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.dts = frame.timestamp
        packet.time_base = time_base
        self.sink(packet)


def _decoder_worker(loop: Any, input_q: Any, output_q: Any, decode_error: threading.Event) -> None:
    """aiortc's decoder thread body; for pass-through receivers it has nothing to do."""
    if isinstance(input_q, PassthroughQueue):
        return
    _original_worker(loop, input_q, output_q, decode_error)


def install(receiver: RTCRtpReceiver, sink: Sink) -> None:
    """Make `receiver` deliver encoded frames to `sink`. Call before the receiver starts."""
    if not hasattr(receiver, _QUEUE_ATTR) or not callable(
        getattr(rtcrtpreceiver, "decoder_worker", None)
    ):
        raise RuntimeError(
            "aiortc's RTCRtpReceiver no longer has the decoder queue the pass-through relies on; "
            "check signaling/passthrough.py against the installed aiortc"
        )
    if rtcrtpreceiver.decoder_worker is not _decoder_worker:
        rtcrtpreceiver.decoder_worker = _decoder_worker
    setattr(receiver, _QUEUE_ATTR, PassthroughQueue(sink))


def release_audio_promptly(receiver: RTCRtpReceiver) -> None:
    """Forward each Opus packet as soon as the next one arrives instead of after four more.

    aiortc's audio jitter buffer prefetches 4 packets (80 ms) to smooth playout for its own
    decoder; a relay only adds that delay, and the browser at the far end has its own buffer.
    """
    if not hasattr(receiver, _JITTER_ATTR):
        raise RuntimeError("aiortc's RTCRtpReceiver no longer has the jitter buffer attribute")
    setattr(receiver, _JITTER_ATTR, JitterBuffer(capacity=16, prefetch=0))


def is_vp8_keyframe(data: bytes) -> bool:
    """VP8 frame tag: the low bit of the first byte is 0 for a key frame (RFC 6386 §9.1)."""
    return bool(data) and not (data[0] & 0x01)


def send_pli(receiver: RTCRtpReceiver) -> bool:
    """Ask the remote sender for a key frame (RTCP PLI) on each SSRC it is sending."""
    _require(receiver, "_send_rtcp_pli")
    sources = receiver.getSynchronizationSources()
    if not sources:
        return False
    for source in sources:
        spawn(receiver._send_rtcp_pli(source.source), "pli")
    return True


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Route a browser's PLI/FIR for this sender to `callback` (there is no encoder here)."""
    _require(sender, "_send_keyframe")
    sender._send_keyframe = callback  # type: ignore[method-assign]


def _require(obj: object, attribute: str) -> None:
    """Fail loudly, at once, if an aiortc upgrade renamed what this module hooks into."""
    if not callable(getattr(obj, attribute, None)):
        raise RuntimeError(f"aiortc's {type(obj).__name__} no longer has {attribute}; check "
                           "signaling/passthrough.py against the installed aiortc")
