"""signaling/fastpath.py's helpers give aiortc's own results."""

from __future__ import annotations

import random
import struct

import pytest
from aiortc import clock, rtcrtpreceiver, rtp
from aiortc.codecs.vpx import VpxPayloadDescriptor, vp8_depayload
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling import fastpath, passthrough


def test_ntp_time_is_aiortcs_to_the_microsecond() -> None:
    for _ in range(1000):
        before = fastpath._original_ntp()
        ours = fastpath.current_ntp_time()
        after = fastpath._original_ntp()
        # aiortc's has microsecond resolution; one microsecond is ~4295 in the low 32 bits.
        assert before - 4295 <= ours <= after + 4295, (before, ours, after)


def test_vp8_payload_matches_aiortcs_parser_on_every_descriptor_shape() -> None:
    rng = random.Random(16)
    shapes = [dict(picture_id=None), dict(picture_id=5), dict(picture_id=300),
              dict(picture_id=300, tl0picidx=7), dict(picture_id=9, tid=(1, 1), keyidx=3),
              dict(tl0picidx=1), dict(keyidx=4), dict(tid=(2, 0))]
    for shape in shapes:
        for start in (0, 1):
            descriptor = bytes(VpxPayloadDescriptor(partition_start=start, partition_id=0,
                                                    **shape))
            payload = descriptor + rng.randbytes(rng.randrange(0, 40))
            assert fastpath.vp8_payload(payload) == vp8_depayload(payload), shape
    # Whatever the bytes, truncated ones included: the same data, or a ValueError from both.
    for _ in range(20000):
        payload = rng.randbytes(rng.randrange(0, 6))
        try:
            expected: bytes | None = vp8_depayload(payload)
        except ValueError:
            expected = None
        if expected is None:
            with pytest.raises(ValueError):
                fastpath.vp8_payload(payload)
        else:
            assert fastpath.vp8_payload(payload) == expected, payload.hex()


def test_install_swaps_aiortcs_helpers_and_leaves_other_codecs_alone() -> None:
    fastpath.install()
    fastpath.install()  # idempotent
    assert clock.current_ntp_time is fastpath.current_ntp_time
    assert rtcrtpreceiver.depayload is fastpath.depayload
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2,
                                 payloadType=111)
    assert fastpath.depayload(opus, b"\x90\x80opus") == b"\x90\x80opus"


def test_install_refuses_when_aiortc_moved_them(monkeypatch) -> None:
    monkeypatch.delattr(rtcrtpreceiver, "depayload")
    with pytest.raises(RuntimeError, match="check signaling/fastpath"):
        fastpath.install()


def _configured_map(ids: dict[str, int]) -> rtp.HeaderExtensionsMap:
    extensions_map = rtp.HeaderExtensionsMap()
    fastpath._original_configure(extensions_map, RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=x_id, uri=URIS[name]) for name, x_id in ids.items()]))
    return extensions_map


URIS = {
    "mid": "urn:ietf:params:rtp-hdrext:sdes:mid",
    "repaired_rtp_stream_id": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "rtp_stream_id": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "abs_send_time": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "transmission_offset": "urn:ietf:params:rtp-hdrext:toffset",
    "audio_level": "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "transport_sequence_number": passthrough.TRANSPORT_CC_URI,
}


def _fields(packet: rtp.RtpPacket) -> dict:
    return {**vars(packet), "extensions": vars(packet.extensions)}


def _same_as_aiortc(data: bytes, extensions_map: rtp.HeaderExtensionsMap) -> None:
    """Where aiortc parses, ours gives every field the same; where aiortc refuses (anything it
    raises), ours raises ValueError, which aiortc's transport drops the packet on."""
    try:
        expected = fastpath._original_parse(data, extensions_map)
    except Exception:  # aiortc also lets struct.error out
        with pytest.raises(ValueError):
            fastpath.parse_rtp(rtp.RtpPacket, data, extensions_map)
        return
    assert _fields(fastpath.parse_rtp(rtp.RtpPacket, data, extensions_map)) == _fields(expected)


def test_parse_rtp_matches_aiortc_on_what_browsers_send() -> None:
    rng = random.Random(11)
    ids = {"mid": 4, "abs_send_time": 2, "transport_sequence_number": 3, "audio_level": 1,
           "transmission_offset": 5, "rtp_stream_id": 10, "repaired_rtp_stream_id": 11}
    extensions_map = _configured_map(ids)
    for _ in range(3000):
        packet = rtp.RtpPacket(payload_type=rng.choice([96, 111]), marker=rng.randrange(2),
                               sequence_number=rng.randrange(1 << 16),
                               timestamp=rng.randrange(1 << 32), ssrc=rng.randrange(1 << 32),
                               payload=rng.randbytes(rng.randrange(0, 1200)))
        packet.csrc = [rng.randrange(1 << 32) for _ in range(rng.choice([0, 0, 0, 2]))]
        packet.extensions.mid = rng.choice([None, "0", "video"])
        packet.extensions.abs_send_time = rng.choice([None, rng.randrange(1 << 24)])
        packet.extensions.transport_sequence_number = rng.choice([None, rng.randrange(1 << 16)])
        packet.extensions.audio_level = rng.choice([None, (True, 30), (False, 127)])
        packet.extensions.transmission_offset = rng.choice([None, -5, 1000])
        packet.extensions.rtp_stream_id = rng.choice([None, "hi"])
        packet.padding_size = 0
        data = packet.serialize(extensions_map)
        if rng.random() < 0.2:  # padded, as a sender's probe is
            padding = rng.randrange(1, 40)
            data = bytes([data[0] | 0x20]) + data[1:] + bytes(padding - 1) + bytes([padding])
        _same_as_aiortc(data, extensions_map)
        _same_as_aiortc(data, rtp.HeaderExtensionsMap())  # an unconfigured map: none known


@settings(max_examples=3000, deadline=None)
@given(header=st.binary(min_size=12, max_size=12), body=st.binary(max_size=60),
       extension=st.one_of(st.none(), st.tuples(
           st.sampled_from([0xBEDE, 0x1000, 0x1234]), st.binary(max_size=24))))
def test_parse_rtp_matches_aiortc_on_any_bytes(header: bytes, body: bytes,
                                               extension: tuple[int, bytes] | None) -> None:
    first = 0x80 | (header[0] & 0x2F)  # version 2; padding and CSRC count as they come
    if extension is not None:
        profile, value = extension
        value += bytes(-len(value) % 4)
        body = struct.pack("!HH", profile, len(value) // 4) + value + body
        first |= 0x10
    data = bytes([first]) + header[1:] + body
    _same_as_aiortc(data, _configured_map({"mid": 1, "abs_send_time": 3, "audio_level": 2,
                                           "transport_sequence_number": 5,
                                           "transmission_offset": 14}))
    # and a header that says it is not version 2, or is shorter than 12 bytes
    _same_as_aiortc(header, rtp.HeaderExtensionsMap())
    _same_as_aiortc(data[:11], rtp.HeaderExtensionsMap())


def test_install_parses_with_the_table_built_at_configure() -> None:
    fastpath.install()
    extensions_map = rtp.HeaderExtensionsMap()
    extensions_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=3, uri=URIS["abs_send_time"])]))
    packet = rtp.RtpPacket(payload_type=96, sequence_number=7)
    packet.extensions.abs_send_time = 123456
    parsed = rtp.RtpPacket.parse(packet.serialize(extensions_map), extensions_map)
    assert parsed.extensions.abs_send_time == 123456
    assert getattr(extensions_map, fastpath._TABLE_ATTR) == {
        3: ("abs_send_time", fastpath._abs_send_time)}
