"""The pass-through hook leans on aiortc internals: these fail loudly if an upgrade breaks it."""

from __future__ import annotations

import av
import pytest
from aiortc import RTCPeerConnection
from aiortc import rtcrtpreceiver as aiortc_receiver

from signaling import passthrough

from .codec_counter import count_codecs
from .node_fixtures import Node


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


async def test_audio_jitter_buffer_swap_targets_a_real_attribute() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        before = getattr(receiver, passthrough._JITTER_ATTR)
        passthrough.release_audio_promptly(receiver)
        after = getattr(receiver, passthrough._JITTER_ATTR)
        assert after is not before and after._prefetch == 0 and before._prefetch > 0
    finally:
        await pc.close()


def test_install_refuses_a_receiver_without_the_private_queue() -> None:
    class NotAReceiver:
        pass

    with pytest.raises(RuntimeError, match="no longer has the decoder queue"):
        passthrough.install(NotAReceiver(), lambda p: None)  # type: ignore[arg-type]


def test_vp8_keyframe_bit() -> None:
    assert passthrough.is_vp8_keyframe(b"\x10\x02\x00")  # low bit 0: key frame
    assert not passthrough.is_vp8_keyframe(b"\x11\x02\x00")
    assert not passthrough.is_vp8_keyframe(b"")


async def test_no_codec_runs_in_a_relayed_call(node: Node, clips, monkeypatch) -> None:
    """Forwarding must not decode or encode: count every codec call and video codec opened.

    (aiortc's sender builds an idle Opus encoder object even when it only packetizes; it never
    encodes, which the call counters show.)
    """
    codecs = count_codecs(monkeypatch)
    booking = await node.book()
    guardian = node.client(booking.guardian_link.split("#token=")[1], clips)
    doctor = node.client(booking.doctor_link.split("#token=")[1], clips)
    try:
        for side in (guardian, doctor):
            await side.connect()
            await side.start_media()
        for side in (guardian, doctor):
            await side.wait_frames("video", 30)
            await side.wait_frames("audio", 30)
    finally:
        await guardian.close()
        await doctor.close()
    assert codecs.calls == []
    assert codecs.video_contexts == []

