"""Frames leave the node's receivers as soon as they are complete (signaling/reassembly.py)."""

from __future__ import annotations

import av
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RtpPacket

from signaling import passthrough
from signaling.reassembly import PromptJitterBuffer


def rtp(seq: int, timestamp: int, data: bytes, marker: bool = False, pt: int = 96) -> RtpPacket:
    """A VP8 packet as a browser sends it: a 1-byte payload descriptor (S bit on a frame's
    first packet), then the frame's bytes."""
    packet = RtpPacket(payload_type=pt, sequence_number=seq & 0xFFFF, timestamp=timestamp,
                       marker=int(marker), ssrc=1234)
    packet.payload = (b"\x10" if data[:1] == b"F" else b"\x00") + data
    packet._data = data  # type: ignore[attr-defined]  # what aiortc's depayload leaves
    return packet


def frame_packets(seq: int, timestamp: int, count: int, tag: bytes) -> list[RtpPacket]:
    return [rtp(seq + i, timestamp, (b"F" if i == 0 else b"-") + tag + bytes([i]),
                marker=i == count - 1) for i in range(count)]


def test_a_video_frame_leaves_with_its_marker_packet() -> None:
    buffer = PromptJitterBuffer(capacity=512, is_video=True)
    first, second = frame_packets(65534, 3000, 3, b"a"), frame_packets(1, 6000, 2, b"b")
    outs = [buffer.add(p)[1] for p in first]
    assert outs[:2] == [None, None]  # aiortc's own would wait for the next frame's first packet
    assert outs[2] is not None and outs[2].timestamp == 3000
    assert outs[2].data == b"".join(p._data for p in first)  # type: ignore[attr-defined]
    # Reordered inside the frame (and across the sequence number wrap): out once all are in.
    assert buffer.add(second[1])[1] is None
    out = buffer.add(second[0])[1]
    assert out is not None and out.timestamp == 6000 and out.data.startswith(b"Fb")


def test_a_retransmission_releases_every_frame_it_held_up_in_order() -> None:
    buffer = PromptJitterBuffer(capacity=512, is_video=True)
    frames = [frame_packets(100 + 3 * i, 3000 * i, 3, bytes([65 + i])) for i in range(3)]
    lost = frames[0][1]
    for packet in [p for f in frames for p in f if p is not lost]:
        assert buffer.add(packet)[1] is None
    out = buffer.add(lost)[1]  # the retransmission
    assert out is not None and out.timestamp == 0
    assert [f.timestamp for f in buffer.ready] == [3000, 6000]
    assert buffer.ready[0].data.startswith(b"FB") and buffer.ready[1].data.startswith(b"FC")


def test_without_a_marker_a_frame_leaves_when_the_next_one_starts() -> None:
    buffer = PromptJitterBuffer(capacity=512, is_video=True)
    assert buffer.add(rtp(1, 3000, b"Fx"))[1] is None
    assert buffer.add(rtp(2, 3000, b"-x"))[1] is None
    out = buffer.add(rtp(3, 6000, b"Fy"))[1]
    assert out is not None and out.data == b"Fx-x" and out.timestamp == 3000


def test_audio_leaves_at_once_and_never_waits_for_a_lost_packet() -> None:
    buffer = PromptJitterBuffer(capacity=16, is_video=False)
    got = [buffer.add(rtp(seq, seq * 960, bytes([seq])))[1] for seq in (10, 11, 13, 14)]
    assert [f.timestamp // 960 for f in got if f is not None] == [10, 11, 13, 14]
    assert buffer.add(rtp(12, 12 * 960, b"\x0c"))[1] is None  # after 13, 14: too late
    assert buffer.add(rtp(14, 14 * 960, b"\x0e"))[1] is None  # a duplicate
    assert buffer.late == 2
    out = buffer.add(rtp(15, 15 * 960, b"\x0f"))[1]
    assert out is not None and out.data == b"\x0f"


async def test_a_real_receiver_publishes_on_the_marker_and_nacks_the_gap(monkeypatch) -> None:
    """Through aiortc's own receive path, as its transport calls it: depayload, NACK generator,
    timestamp mapper, then the pass-through queue."""
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video").receiver
        receiver._track = RemoteStreamTrack("video")  # as RTCPeerConnection sets it on an offer
        got: list[av.Packet | None] = []
        passthrough.install(receiver, got.append)
        passthrough.release_promptly(receiver)
        nacked: list[list[int]] = []

        async def send_nack(media_ssrc: int, lost: list[int]) -> None:
            nacked.append(lost)

        monkeypatch.setattr(receiver, "_send_rtcp_nack", send_nack)
        vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
        await receiver.receive(RTCRtpReceiveParameters(codecs=[vp8]))

        frames = [frame_packets(500 + 3 * i, 90000 + 3000 * i, 3, bytes([65 + i]))
                  for i in range(3)]
        for packet in frames[0]:
            await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
        assert [p is not None and p.pts for p in got] == [0]
        assert bytes(got[0]).startswith(b"FA")  # type: ignore[arg-type]
        lost = frames[1][2]
        for packet in [p for f in frames[1:] for p in f if p is not lost]:
            await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
        assert len(got) == 1 and nacked == [[lost.sequence_number]]
        await receiver._handle_rtp_packet(lost, arrival_time_ms=0)
        assert [p.pts for p in got if p is not None] == [0, 3000, 6000]
        assert [bytes(p)[:2] for p in got if p is not None] == [b"FA", b"FB", b"FC"]
    finally:
        await pc.close()


def test_release_promptly_refuses_a_receiver_without_the_private_parts() -> None:
    class Renamed:
        pass

    with pytest.raises(RuntimeError, match="needs `install` first"):
        passthrough.release_promptly(Renamed())  # type: ignore[arg-type]
