"""The node's send-side estimate: transport-wide numbers on its video packets, and the queue
the browser's feedback on them shows (signaling/sendside.py)."""

from __future__ import annotations

import random

import pytest
from aiortc import rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling import passthrough
from signaling.bandwidth import Link
from signaling.sendside import (
    BETA,
    DelayBound,
    SendSide,
    stamp,
)
from signaling.twcc import feedback

URIS = {
    "mid": "urn:ietf:params:rtp-hdrext:sdes:mid",
    "abs_send_time": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "audio_level": "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "transport_sequence_number": passthrough.TRANSPORT_CC_URI,
}


def _map(ids: dict[str, int]) -> rtp.HeaderExtensionsMap:
    extensions_map = rtp.HeaderExtensionsMap()
    extensions_map.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=x_id, uri=URIS[name]) for name, x_id in ids.items()]))
    return extensions_map


def test_stamp_writes_what_aiortc_would_have_written() -> None:
    """Byte for byte: aiortc writes the transport-wide number last, then pads."""
    rng = random.Random(5)
    for _ in range(2000):
        names = [*rng.sample(list(URIS)[:3], rng.randrange(1, 4)), "transport_sequence_number"]
        ids = dict(zip(names, rng.sample(range(1, 15), len(names)), strict=True))
        extensions_map = _map(ids)
        packet = rtp.RtpPacket(payload_type=96, marker=rng.randrange(2),
                               sequence_number=rng.randrange(1 << 16),
                               timestamp=rng.randrange(1 << 32), ssrc=rng.randrange(1 << 32),
                               payload=rng.randbytes(rng.randrange(1, 1200)))
        packet.csrc = [rng.randrange(1 << 32) for _ in range(rng.choice([0, 0, 1]))]
        packet.extensions.mid = rng.choice([None, "0", "video", "a-long-mid"])
        packet.extensions.abs_send_time = rng.choice([None, 0, rng.randrange(1 << 24)])
        packet.extensions.audio_level = rng.choice([None, (True, 0), (False, 127)])
        unstamped = packet.serialize(extensions_map)
        sequence = rng.randrange(1 << 16)
        packet.extensions.transport_sequence_number = sequence
        assert stamp(unstamped, ids["transport_sequence_number"], sequence) == \
            packet.serialize(extensions_map)


def test_stamp_refuses_two_byte_extensions_and_the_sender_sends_them_as_they_are() -> None:
    data = bytes([0x90, 96, 0, 1]) + bytes(8) + b"\x10\x00\x00\x01" + b"\x01\x02\x03\x04"
    with pytest.raises(ValueError):
        stamp(data, 3, 7)
    side = SendSide(_link(), extension_id=3)
    assert side.stamp(data) == data and side.unstamped == 1
    assert side.stamp(data[:14]) == data[:14] and side.unstamped == 2  # cut short


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=80))
def test_stamp_takes_any_bytes_or_refuses_them_with_value_error(data: bytes) -> None:
    try:
        stamped = stamp(data, 5, 0x1234)
    except ValueError:
        return
    assert len(stamped) > len(data) and stamped[0] & 0x10


def _link(loss_bound: float = 2_000_000) -> Link:
    link = Link()
    link.loss_bound_bps = loss_bound
    return link


def _fill(bound: DelayBound, rate_bps: float, link_bps: float, seconds: float,
          start: float = 0.0, queue: float = 0.0, size: int = 1000,
          feedback_every: float = 0.05) -> tuple[float, float]:
    """Send `size`-byte packets at `rate_bps` for `seconds` into a drop-tail-free link of
    `link_bps` with 40 ms of path delay; feed their arrivals back every `feedback_every`.
    Returns (when it ended, the queue left, in seconds)."""
    now, batch, sent_at_feedback = start, [], start
    gap = size * 8 / rate_bps
    while now < start + seconds:
        queue = max(0.0, queue - gap) + size * 8 / link_bps
        batch.append((now, now + 0.04 + queue + 1000.0, size))  # the browser's clock: +1000 s
        now += gap
        if now - sent_at_feedback >= feedback_every:
            bound.update(batch, now=now + 0.04)
            batch, sent_at_feedback = [], now
    return now, queue


def test_a_link_fed_faster_than_it_drains_is_capped_near_its_rate() -> None:
    link = _link()
    bound = DelayBound(link)
    now, _ = _fill(bound, 300_000, 2_000_000, 3.0)  # a clean start: no queue
    assert link.delay_bound_bps is None
    _fill(bound, 1_500_000, 400_000, 1.0, start=now)  # the downlink drops to 400 kbit/s
    assert link.delay_bound_bps is not None
    assert 0.7 * 400_000 <= link.delay_bound_bps <= BETA * 400_000 * 1.05
    assert link.capacity() == int(link.delay_bound_bps)


def test_the_cut_follows_what_the_link_carried_not_a_lull_before_it() -> None:
    """After a drop the node sends little (it drops frames, waiting for a key frame) while the
    queue still stands: the link carried 400 kbit/s when it was full, whatever the node's own
    lull carries now (a cut by that spiralled to 59 kbit/s, bench.impair C)."""
    link = _link()
    bound = DelayBound(link)
    now, queue = _fill(bound, 300_000, 2_000_000, 3.0)
    now, queue = _fill(bound, 1_500_000, 400_000, 0.3, start=now, queue=queue)  # the drop
    assert link.delay_bound_bps is not None
    # The lull: 60 kbit/s of video behind a queue that drains no faster (the rest of the link
    # is taken), so it stands at what the drop left.
    _fill(bound, 60_000, 60_000, 1.5, start=now, queue=queue, size=200)
    assert link.queue_s is not None and link.queue_s > 0.2
    assert 0.75 * 400_000 <= link.delay_bound_bps <= BETA * 400_000 * 1.05


def test_a_key_frame_burst_that_drains_is_not_a_full_link() -> None:
    link = _link()
    bound = DelayBound(link)
    now, queue = _fill(bound, 300_000, 1_000_000, 3.0)
    # a 12 kB key frame paced at 2.5 times the link: ~60 ms of queue at its end, gone in 100 ms
    now, queue = _fill(bound, 2_500_000, 1_000_000, 0.04, start=now, queue=queue)
    _fill(bound, 300_000, 1_000_000, 2.0, start=now, queue=queue)
    assert link.delay_bound_bps is None and bound.decreases == 0


def test_the_cap_grows_back_once_the_queue_is_gone_and_is_lifted() -> None:
    link = _link(loss_bound=1_000_000)
    bound = DelayBound(link)
    now, queue = _fill(bound, 300_000, 1_000_000, 2.0)
    now, queue = _fill(bound, 800_000, 300_000, 0.6, start=now, queue=queue)
    capped = link.delay_bound_bps
    assert capped is not None and capped < 300_000
    # the link has room again; the sender follows the cap (it sends what it is allowed)
    while link.delay_bound_bps is not None and now < 60:
        rate = min(link.delay_bound_bps, 900_000)
        now, queue = _fill(bound, rate, 2_000_000, 0.5, start=now, queue=queue)
    assert link.delay_bound_bps is None, "the cap never grew past the loss bound"


def test_send_side_matches_feedback_to_what_it_sent() -> None:
    link = _link()
    side = SendSide(link, extension_id=3)
    plain = rtp.RtpPacket(payload_type=96, sequence_number=1, payload=bytes(900)).serialize()
    for _ in range(65536 + 10):  # past a wrap of the 16-bit numbers: 3 is sent again
        side.stamp(plain)
    side.feedback(feedback(1, 2, 0, 3, [5_000_000 + i * 1000 for i in range(5)])[12:])
    assert side.feedbacks == 1 and len(side.bound._acked) == 5
    side.feedback(b"\x00\x01")  # cut short: counted, not raised
    assert side.malformed == 1
