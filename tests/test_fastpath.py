"""signaling/fastpath.py's helpers give aiortc's own results."""

from __future__ import annotations

import random

import pytest
from aiortc import clock, rtcrtpreceiver
from aiortc.codecs.vpx import VpxPayloadDescriptor, vp8_depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from signaling import fastpath


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
