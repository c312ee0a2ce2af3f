"""The pass-through hook leans on aiortc internals: these fail loudly if an upgrade breaks it."""

from __future__ import annotations

import re

import av
import pytest
from aiortc import RTCPeerConnection, VideoStreamTrack
from aiortc import rtcrtpreceiver as aiortc_receiver
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket, RtpPacket

from bench.identity import until
from core.vp8 import is_vp8_keyframe
from signaling import ice, passthrough
from tests.clinical_helpers import joined

from .codec_counter import count_codecs
from .node_fixtures import Node
from .offers import negotiate


async def test_install_swaps_the_decoder_queue_of_a_real_receiver() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video").receiver
        got: list[av.Packet | None] = []
        passthrough.install(receiver, got.append)
        assert aiortc_receiver.decoder_worker is passthrough._decoder_worker
        queue = receiver._RTCRtpReceiver__decoder_queue
        assert isinstance(queue, passthrough.PassthroughQueue)

        class Codec:
            clockRate = 90000

        class Frame:
            data = b"\x10\x02\x00\x9d\x01\x2a"
            timestamp = 3000

        queue.put((Codec, Frame))
        queue.put(None)
        assert got[0] is not None and bytes(got[0]) == Frame.data
        assert got[0].pts == 3000 and got[0].time_base.denominator == 90000
        assert got[1] is None
    finally:
        await pc.close()


def test_install_refuses_a_receiver_without_the_private_queue() -> None:
    class NotAReceiver:
        pass

    with pytest.raises(RuntimeError, match="no longer has the decoder queue"):
        passthrough.install(NotAReceiver(), lambda p: None)  # type: ignore[arg-type]


def test_keyframe_hooks_refuse_objects_without_the_private_methods() -> None:
    class Renamed:
        pass

    with pytest.raises(RuntimeError, match="no longer has _send_keyframe"):
        passthrough.on_keyframe_request(Renamed(), lambda: None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no longer has _send_rtcp_pli"):
        passthrough.send_pli(Renamed())  # type: ignore[arg-type]


async def test_a_late_viewer_gets_a_key_frame_asked_of_the_sender(node: Node, clips) -> None:
    """The guardian's camera sends one key frame every 10 s. The doctor joins later: the node
    holds the doctor's video until a key frame, asks the guardian for one (PLI) at once, and
    the doctor sees a picture in well under the 10 s it would otherwise wait."""
    import time

    from bench.clip import encode_vp8
    from bench.identity import until
    from core.auth import Role

    long_gop = encode_vp8(320, 240, fps=30, seconds=10.0, bitrate=300_000, keyframe_every=300)
    booking = await node.book()
    guardian = node.client(booking.guardian_link.split("#token=")[1],
                           {"video": long_gop, "audio": clips["audio"]})
    doctor = node.client(booking.doctor_link.split("#token=")[1], clips)
    try:
        await guardian.connect()
        await guardian.start_media()
        source = node.rooms.get(booking.consultation_id).participants[
            Role.GUARDIAN].sources["video"]
        # Well past the guardian's first (and only) key frame:
        await until(lambda: source.frames >= 45, 15, "the guardian's video reaching the node")
        [camera] = [t for t in guardian.tracks if t.kind == "video"]
        asked_before = camera.keyframe_requests
        await doctor.connect()
        started = time.monotonic()
        await doctor.start_media()
        await doctor.wait_frames("video", 5, timeout=8)
        took = time.monotonic() - started
        assert camera.keyframe_requests > asked_before
        assert doctor.received["video"].keyframes >= 1
        assert took < 5.0, f"first picture after {took:.1f} s"
    finally:
        await guardian.close()
        await doctor.close()


def test_vp8_keyframe_bit() -> None:
    assert is_vp8_keyframe(b"\x10\x02\x00")  # low bit 0: key frame
    assert not is_vp8_keyframe(b"\x11\x02\x00")
    assert not is_vp8_keyframe(b"")


async def test_no_codec_runs_in_a_relayed_call(node: Node, clips, monkeypatch) -> None:
    """Forwarding must not decode or encode: count every codec call and video codec opened.

    (aiortc's sender builds an idle Opus encoder object even when it only packetizes; it never
    encodes, which the call counters show.)
    """
    codecs = count_codecs(monkeypatch)
    async with joined(node, clips) as (_, guardian, doctor):
        for side in (guardian, doctor):
            await side.wait_frames("video", 30)
            await side.wait_frames("audio", 30)
    assert codecs.calls == []
    assert codecs.video_contexts == []



async def test_bandwidth_hooks_target_real_attributes() -> None:
    """REMB in, REMB out, transport-wide feedback and the socket backlog, on real aiortc objects."""
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("video")
        receiver, sender = transceiver.receiver, transceiver.sender
        passthrough.stop_own_remb(receiver)
        assert getattr(receiver, passthrough._ESTIMATOR_ATTR) is None
        assert isinstance(passthrough.rtcp_ssrc(receiver), int)
        assert passthrough.send_remb(receiver, 300_000) is False  # nothing received yet: no-op
        seen: list[tuple[str, object]] = []
        passthrough.on_rtp(receiver, lambda p: seen.append(("first", p)))
        passthrough.on_rtp(receiver, lambda p: seen.append(("second", p)))  # one wrapper, both
        packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=0, ssrc=5)
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)  # as the transport calls it
        assert seen == [("first", packet), ("second", packet)]
        assert passthrough.send_backlog(sender) == 0  # no nominated pair yet
        passthrough.negotiate_transport_cc()
        passthrough.negotiate_transport_cc()  # idempotent
        from aiortc import codecs

        assert sum(e.uri == passthrough.TRANSPORT_CC_URI
                   for e in codecs.HEADER_EXTENSIONS["video"]) == 1
        assert passthrough.transport_sequence_id(sender) is None  # nothing negotiated yet
    finally:
        await pc.close()


async def test_the_transport_wide_id_is_read_from_a_negotiated_sender() -> None:
    passthrough.negotiate_transport_cc()
    ice.use_host_addresses(["127.0.0.1"])
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        sender = offerer.addTrack(VideoStreamTrack())
        await negotiate(offerer, answerer)
        # The sender configures its map when it starts, once ICE and DTLS are up.
        await until(lambda: passthrough.transport_sequence_id(sender) is not None, 15,
                    "the sender's start")
        answer = answerer.localDescription.sdp
        expected = int(re.search(rf"a=extmap:(\d+) {re.escape(passthrough.TRANSPORT_CC_URI)}",
                                 answer).group(1))
        assert passthrough.transport_sequence_id(sender) == expected
    finally:
        await offerer.close()
        await answerer.close()
        ice.use_host_addresses([])


async def test_sender_report_hooks_target_real_attributes() -> None:
    """A sender report through the real receiver's RTCP handler reaches the callback, and its RTP
    timestamp lands in the receiver's frame timeline, across a 32-bit wrap."""
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        seen: list[tuple[int, int]] = []
        passthrough.on_sender_report(receiver, lambda ntp, rtp: seen.append((ntp, rtp)))
        frame_timestamp = passthrough.frame_timestamp_of(receiver)
        assert frame_timestamp(1000) is None  # no frame yet
        mapper = getattr(receiver, passthrough._MAPPER_ATTR)
        assert mapper.map(2**32 - 900) == 0  # what aiortc does to each frame it hands over
        assert mapper.map(2100) == 3000  # the RTP timestamp wrapped
        assert frame_timestamp(2100 + 960) == 3960
        assert frame_timestamp(2**32 - 100) == 800  # a report from before the wrap
        report = RtcpSrPacket(ssrc=7, sender_info=RtcpSenderInfo(
            ntp_timestamp=(3_900_000_000 << 32), rtp_timestamp=2100, packet_count=1,
            octet_count=10))
        await receiver._handle_rtcp_packet(report)  # as the transport calls it
        assert seen == [(3_900_000_000 << 32, 2100)]
    finally:
        await pc.close()


def test_bandwidth_hooks_refuse_objects_without_the_private_parts() -> None:
    class Renamed:
        pass

    with pytest.raises(RuntimeError, match="remote bitrate estimator"):
        passthrough.stop_own_remb(Renamed())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="RTCP SSRC"):
        passthrough.rtcp_ssrc(Renamed())  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no longer has _handle_rtp_packet"):
        passthrough.on_rtp(Renamed(), lambda p: None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no longer has _handle_rtcp_packet"):
        passthrough.on_feedback(Renamed(), print, print)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no longer has _handle_rtcp_packet"):
        passthrough.on_sender_report(Renamed(), print)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="timestamp mapper"):
        passthrough.frame_timestamp_of(Renamed())  # type: ignore[arg-type]


async def test_a_nacked_packet_goes_out_again_at_most_once_a_round_trip(monkeypatch) -> None:
    """A receiver repeats its NACK before the retransmission can arrive: the repeats must not
    put the same packet into a full link again (issue 11, profile C's drop)."""
    from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket

    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video").sender
        sent: list[bytes] = []

        async def send_rtp(data: bytes) -> None:  # the DTLS transport, as the sender calls it
            sent.append(data)

        monkeypatch.setattr(sender.transport, "_send_rtp", send_rtp)
        history = sender._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
        for seq in (10, 11):  # two packets the sender sent (seq % RTP_HISTORY_SIZE)
            history[seq] = RtpPacket(payload_type=96, sequence_number=seq, timestamp=0,
                                     ssrc=sender._ssrc)
        congested = [False]
        counts = passthrough.limit_retransmissions(sender, lambda: congested[0])
        now = [1000.0]
        monkeypatch.setattr(passthrough.time, "monotonic", lambda: now[0])
        sender._RTCRtpSender__rtt = 0.2  # type: ignore[attr-defined]

        async def nack(*lost: int) -> None:
            await sender._handle_rtcp_packet(RtcpRtpfbPacket(
                fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=sender._ssrc, lost=list(lost)))

        await nack(10, 11)
        now[0] += 0.1
        await nack(10)  # the receiver's timer, before the retransmission could arrive
        assert len(sent) == 2 and (counts.sent, counts.held) == (2, 1)
        now[0] += 0.15  # a round trip later it may have been lost again
        await nack(10)
        assert len(sent) == 3 and counts.sent == 3
        congested[0] = True  # the path's buffer is full: nothing goes into it
        now[0] += 1.0
        await nack(10, 11)
        assert len(sent) == 3 and counts.held == 3
    finally:
        await pc.close()
