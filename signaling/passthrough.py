"""Receive encoded frames from aiortc without decoding them.

aiortc's RTCRtpReceiver re-assembles each encoded frame on the event loop, then hands it to a
decoder thread through a private queue. For the node's own peers we swap that queue for one that
turns the frame into an `av.Packet` and gives it straight to a sink, on the loop: no decoder, no
thread hop, no per-frame `run_coroutine_threadsafe`. The decoder thread aiortc still starts exits
at once (see `_decoder_worker`).

Bandwidth feedback needs more hooks, because a relay must carry what a direct call gets for free:
the REMB a receiving browser sends about the node's stream to it (aiortc gives it only to an
encoder the pass-through never has), the REMB the node sends a browser about its stream (in place
of aiortc's own, see `stop_own_remb`), and transport-wide feedback both ways
(signaling/receiveside.py, signaling/sendside.py).

This leans on private details of aiortc (pinned in pyproject.toml): the receiver's
`__decoder_queue`, `__jitter_buffer`, `__remote_bitrate_estimator`, `__rtcp_ssrc` and
`__timestamp_mapper` attributes and its `_handle_rtp_packet`, `_handle_rtcp_packet` and
`_send_rtcp`, the sender report's `sender_info`, the module-level `decoder_worker`, aiortc's
codec tables, the sender's `_handle_rtcp_packet`, `_retransmit`, `__rtt` and
`__rtp_header_extensions_map`, and aioice's nominated pair. Each hook checks what it needs and
raises if it is gone, and tests/test_passthrough.py fails loudly after an upgrade that breaks
them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from .background import spawn
from .reassembly import PromptJitterBuffer
from .twcc import TransportFeedbackPacket

Sink = Callable[[av.Packet | None], None]

_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_ESTIMATOR_ATTR = "_RTCRtpReceiver__remote_bitrate_estimator"
_RTCP_SSRC_ATTR = "_RTCRtpReceiver__rtcp_ssrc"
_MAPPER_ATTR = "_RTCRtpReceiver__timestamp_mapper"
_original_worker = rtcrtpreceiver.decoder_worker


class PassthroughQueue:
    """Stands in for the receiver's decoder queue: `put` is called on the loop for each frame."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._time_bases: dict[int, Fraction] = {}
        # Frames completed with the one just put (see `release_promptly`), and aiortc's mapper.
        self.backlog: tuple[deque[Any], Any] | None = None

    def put(self, item: tuple[Any, Any] | None) -> None:
        if item is None:  # the receiver stopped
            self.sink(None)
            return
        codec, frame = item
        self._put(codec, frame)
        if self.backlog is not None:
            ready, mapper = self.backlog
            while ready:
                frame = ready.popleft()
                frame.timestamp = mapper.map(frame.timestamp)
                self._put(codec, frame)

    def _put(self, codec: Any, frame: Any) -> None:
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


def frame_rtp_timestamp(receiver: RTCRtpReceiver) -> Callable[[], int | None]:
    """The RTP timestamp of the frame `receiver` is handing to its sink right now.

    aiortc rebases each frame's timestamp to start at 0 just before handing it over; its
    TimestampMapper keeps the original as `_last`, which is what the frame's packets carried.
    """
    mapper = getattr(receiver, _MAPPER_ATTR, None)
    if mapper is None or not hasattr(mapper, "_last"):
        raise RuntimeError("aiortc's RTCRtpReceiver no longer has the timestamp mapper; check "
                           "signaling/passthrough.py against the installed aiortc")
    return lambda: mapper._last


def frame_timestamp_of(receiver: RTCRtpReceiver) -> Callable[[int], int | None]:
    """Turns an RTP timestamp of this receiver's stream into the timeline of the frames it hands
    over (rebased to 0 at the first frame, wraps unrolled), near the frame handed over last.

    For sender reports (`on_sender_report`), whose RTP timestamp is of the last packet sent:
    within half the 32-bit range (~6.6 h of video) of the last frame, so a wrap between them
    counts right. None before the first frame."""
    mapper = getattr(receiver, _MAPPER_ATTR, None)
    if mapper is None or not hasattr(mapper, "_last") or not hasattr(mapper, "_origin"):
        raise RuntimeError("aiortc's RTCRtpReceiver no longer has the timestamp mapper; check "
                           "signaling/passthrough.py against the installed aiortc")

    def convert(rtp_timestamp: int) -> int | None:
        last, origin = mapper._last, mapper._origin
        if last is None or origin is None:
            return None
        ahead = (rtp_timestamp - last + (1 << 31)) % (1 << 32) - (1 << 31)
        return last - origin + ahead

    return convert


def on_sender_report(receiver: RTCRtpReceiver, callback: Callable[[int, int], None]) -> None:
    """Show `callback` each RTCP sender report's (64-bit NTP time, RTP timestamp) pair for this
    receiver's stream, before aiortc handles the report: the sender's own clock for its media,
    which is what lip-sync (and the recorder's timing) map both kinds onto."""
    _require(receiver, "_handle_rtcp_packet")
    fields = {f.name for f in dataclasses.fields(RtcpSenderInfo)}
    if not {"ntp_timestamp", "rtp_timestamp"} <= fields or "sender_info" not in {
            f.name for f in dataclasses.fields(RtcpSrPacket)}:
        raise RuntimeError("aiortc's RtcpSrPacket no longer has sender_info with ntp_timestamp "
                           "and rtp_timestamp; check signaling/passthrough.py against the "
                           "installed aiortc")
    original = receiver._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            callback(packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp)
        await original(packet)

    receiver._handle_rtcp_packet = handle  # type: ignore[method-assign]


def release_promptly(receiver: RTCRtpReceiver) -> PromptJitterBuffer:
    """Let each frame go as soon as it is complete (signaling/reassembly.py), not when the next
    frame's first packet arrives. Call after `install`.

    aiortc's receiver takes one frame from its jitter buffer per RTP packet; when a
    retransmission completes several, the queue hands on the rest right after the first,
    through aiortc's timestamp mapper, as the receiver would have.
    """
    queue = getattr(receiver, _QUEUE_ATTR, None)
    mapper = getattr(receiver, _MAPPER_ATTR, None)
    old = getattr(receiver, _JITTER_ATTR, None)
    if not isinstance(queue, PassthroughQueue) or not isinstance(old, JitterBuffer) or not \
            callable(getattr(mapper, "map", None)):
        raise RuntimeError("release_promptly needs `install` first, and aiortc's receiver's "
                           "jitter buffer and timestamp mapper; check signaling/passthrough.py "
                           "against the installed aiortc")
    buffer = PromptJitterBuffer(capacity=old.capacity, is_video=old._is_video)
    setattr(receiver, _JITTER_ATTR, buffer)
    queue.backlog = (buffer.ready, mapper)
    return buffer


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


def stop_own_remb(receiver: RTCRtpReceiver) -> None:
    """Stop aiortc estimating this receiver's incoming leg and sending that as REMB.

    Its arrival times are taken on the event loop, so on a busy node a loop stall reads as
    queueing: measured here with two browsers on two cores it drove a clean loopback call down to
    110 kbit/s. The sender's own controller, fed by transport-wide feedback
    (signaling/receiveside.py), judges that leg; the node's REMB (signaling/bandwidth.py)
    carries only the far side's limit.
    """
    if not hasattr(receiver, _ESTIMATOR_ATTR):
        raise RuntimeError("aiortc's RTCRtpReceiver no longer has its remote bitrate estimator")
    setattr(receiver, _ESTIMATOR_ATTR, None)


def rtcp_ssrc(receiver: RTCRtpReceiver) -> int | None:
    if not hasattr(receiver, _RTCP_SSRC_ATTR):
        raise RuntimeError("aiortc's RTCRtpReceiver no longer has its RTCP SSRC")
    return getattr(receiver, _RTCP_SSRC_ATTR)


def send_rtcp(receiver: RTCRtpReceiver, packet: Any) -> None:
    """Send an RTCP packet (anything bytes() turns into one) on the receiver's transport."""
    _require(receiver, "_send_rtcp")
    spawn(receiver._send_rtcp(packet), "rtcp")


_RTP_CALLBACKS_ATTR = "_teleconsult_rtp_callbacks"


def on_rtp(receiver: RTCRtpReceiver, callback: Callable[[Any], None]) -> None:
    """Show `callback` every RTP packet this receiver gets, before aiortc handles it. Callbacks
    are called in the order given, from one wrapper (each wrapper is a coroutine a packet)."""
    callbacks: list[Callable[[Any], None]] | None = getattr(receiver, _RTP_CALLBACKS_ATTR, None)
    if callbacks is not None:
        callbacks.append(callback)
        return
    _require(receiver, "_handle_rtp_packet")
    original = receiver._handle_rtp_packet
    callbacks = [callback]
    setattr(receiver, _RTP_CALLBACKS_ATTR, callbacks)

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        for each in callbacks:
            each(packet)
        await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


def negotiate_transport_cc() -> None:
    """Offer transport-wide congestion control for video in every answer aiortc makes.

    aiortc answers only the header extensions and RTCP feedback its tables list; a browser's
    sender uses its transport-wide controller only when both are in the answer. Process-wide,
    like the tables; idempotent."""
    from aiortc import codecs
    from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpHeaderExtensionParameters

    extensions = codecs.HEADER_EXTENSIONS["video"]
    if not any(e.uri == TRANSPORT_CC_URI for e in extensions):
        extensions.append(RTCRtpHeaderExtensionParameters(id=5, uri=TRANSPORT_CC_URI))
    for codec in codecs.CODECS["video"]:
        if codec.mimeType == "video/VP8" and not any(
                f.type == "transport-cc" for f in codec.rtcpFeedback):
            codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))


TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


def send_remb(receiver: RTCRtpReceiver, bitrate: int) -> bool:
    """Tell the remote sender the most it should send on this receiver's SSRCs (RTCP REMB)."""
    ssrc = rtcp_ssrc(receiver)
    ssrcs = [s.source for s in receiver.getSynchronizationSources()]
    if ssrc is None or not ssrcs:
        return False
    send_rtcp(receiver, RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=ssrc, media_ssrc=0,
                                       fci=pack_remb_fci(bitrate, ssrcs)))
    return True


def on_feedback(sender: RTCRtpSender, on_remb: Callable[[int], None],
                on_report: Callable[[int, int], None],
                on_transport_feedback: Callable[[bytes], None] = lambda fci: None) -> None:
    """Route what a browser reports of this sender's stream: its REMB (bit/s), each receiver
    report's cumulative packets lost and extended highest sequence number, and its transport-wide
    feedback's FCI (signaling/twcc.py's `install` keeps it)."""
    _require(sender, "_handle_rtcp_packet")
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, _ = unpack_remb_fci(packet.fci)
            except ValueError:
                pass
            else:
                on_remb(bitrate)
        elif isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    on_report(report.packets_lost, report.highest_sequence)
        elif isinstance(packet, TransportFeedbackPacket):
            on_transport_feedback(packet.fci)
            return  # aiortc has nothing to do with it
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


_SENDER_MAP_ATTR = "_RTCRtpSender__rtp_header_extensions_map"
_MAP_IDS_ATTR = "_HeaderExtensionsMap__ids"


def transport_sequence_id(sender: RTCRtpSender) -> int | None:
    """The header extension id negotiated for transport-wide sequence numbers on this sender's
    stream (None: not negotiated). Once the sender runs: its map is configured then."""
    ids = getattr(getattr(sender, _SENDER_MAP_ATTR, None), _MAP_IDS_ATTR, None)
    if ids is None or not hasattr(ids, "transport_sequence_number"):
        raise RuntimeError("aiortc's RTCRtpSender no longer has its header extensions map; "
                           "check signaling/passthrough.py against the installed aiortc")
    return ids.transport_sequence_number


def send_backlog(sender: RTCRtpSender) -> int:
    """Bytes waiting in the local UDP socket's buffer on this sender's path (0 before ICE).

    asyncio's datagram transport buffers without limit once `sendto` would block; a relay that
    keeps writing there builds seconds of delay in front of the ICE consent checks."""
    connection = getattr(sender.transport.transport, "_connection", None)
    nominated = getattr(connection, "_nominated", None)
    if not isinstance(nominated, dict):
        raise RuntimeError("aioice's Connection no longer has _nominated; check "
                           "signaling/passthrough.py against the installed aiortc and aioice")
    pair = nominated.get(1)
    if pair is None:
        return 0
    transport = getattr(pair.protocol, "transport", None)  # a TURN relay has none of its own
    return transport.get_write_buffer_size() if transport is not None else 0


# A NACKed packet goes out again at most once a round trip (never twice in RETRANSMIT_MIN_S).
RETRANSMIT_MIN_S = 0.05
RETRANSMIT_DEFAULT_RTT_S = 0.1  # before the first receiver report gives the round trip
_RTT_ATTR = "_RTCRtpSender__rtt"
_HISTORY_LIMIT = 1024  # packets whose last retransmission is remembered


class Retransmissions:
    """What `limit_retransmissions` let through and held back on one sender."""

    def __init__(self) -> None:
        self.sent = 0
        self.held = 0


def limit_retransmissions(sender: RTCRtpSender,
                          congested: Callable[[], bool] = lambda: False) -> Retransmissions:
    """Retransmit a NACKed packet at most once per round trip, as Chromium's sender does, and
    not while the path is `congested` (its buffer full: a retransmission would push out the
    audio behind it and likely be lost itself).

    aiortc retransmits every sequence number of every NACK. A receiver NACKs a missing packet
    again each time its own timer fires, before the first retransmission can have arrived, so
    on a link that is already full (a router's buffer after a drop from 2 Mbit/s to 400 kbit/s,
    bench.impair C) each loss went out several times, into the same full buffer, in front of the
    media it was meant to repair."""
    _require(sender, "_retransmit")
    if not hasattr(sender, _RTT_ATTR):
        raise RuntimeError("aiortc's RTCRtpSender no longer has its round-trip time; check "
                           "signaling/passthrough.py against the installed aiortc")
    original = sender._retransmit
    last: dict[int, float] = {}
    counts = Retransmissions()

    async def retransmit(sequence_number: int) -> None:
        now = time.monotonic()
        rtt = getattr(sender, _RTT_ATTR) or RETRANSMIT_DEFAULT_RTT_S
        at = last.get(sequence_number)
        if (at is not None and now - at < max(RETRANSMIT_MIN_S, rtt)) or congested():
            counts.held += 1
            return
        last.pop(sequence_number, None)
        last[sequence_number] = now  # newest last: the oldest go first below
        while len(last) > _HISTORY_LIMIT:
            del last[next(iter(last))]
        counts.sent += 1
        await original(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]
    return counts
