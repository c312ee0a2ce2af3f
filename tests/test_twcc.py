"""Transport-wide feedback packets, read back by a reader written from the draft's text
(draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1), not from the writer."""

from __future__ import annotations

import struct

from signaling.twcc import feedback


def read(packet: bytes) -> tuple[int, int, list[int | None]]:
    """(base sequence, feedback count, arrival in µs or None per packet)."""
    first, pt, length = struct.unpack_from("!BBH", packet)
    assert first >> 6 == 2 and first & 0x1F == 15 and pt == 205
    assert len(packet) == (length + 1) * 4
    base, count = struct.unpack_from("!HH", packet, 12)
    ref_and_count = struct.unpack_from("!I", packet, 16)[0]
    reference, fb_count = ref_and_count >> 8, ref_and_count & 0xFF
    offset, symbols = 20, []
    while len(symbols) < count:
        chunk = struct.unpack_from("!H", packet, offset)[0]
        offset += 2
        if chunk >> 15 == 0:  # run length: status, length
            symbols += [(chunk >> 13) & 0x3] * (chunk & 0x1FFF)
        elif (chunk >> 14) & 1 == 0:  # one-bit vector of 14
            symbols += [(chunk >> (13 - i)) & 1 for i in range(14)]
        else:  # two-bit vector of 7
            symbols += [(chunk >> (12 - 2 * i)) & 0x3 for i in range(7)]
    at, arrivals = reference * 64_000, []
    for symbol in symbols[:count]:
        if symbol == 0:
            arrivals.append(None)
            continue
        if symbol == 1:
            delta = packet[offset]
            offset += 1
        else:
            delta = struct.unpack_from("!h", packet, offset)[0]
            offset += 2
        at += delta * 250
        arrivals.append(at)
    return base, fb_count, arrivals


def test_feedback_says_which_packets_arrived_and_when() -> None:
    start = 1_000_000_123  # µs
    arrivals = [start, start + 1_000, None, start + 9_000, start + 200_000,  # a large gap
                start + 150_000,  # reordered: a negative delta
                None, None, start + 200_250]
    packet = feedback(sender_ssrc=1, media_ssrc=2, count=7, base=65530, arrivals=arrivals)
    base, fb_count, got = read(packet)
    assert (base, fb_count) == (65530, 7)
    assert [a is None for a in got] == [a is None for a in arrivals]
    for sent, read_back in zip(arrivals, got, strict=True):
        if sent is not None:
            assert abs(read_back - sent) <= 125  # quantised to 250 µs, without drift


def test_a_long_feedback_spans_many_chunks() -> None:
    arrivals = [None if i % 5 == 0 else 5_000_000 + i * 700 for i in range(1, 200)]
    _, _, got = read(feedback(1, 2, 0, 10, arrivals))
    assert len(got) == len(arrivals)
    assert all((a is None) == (b is None) for a, b in zip(arrivals, got, strict=True))
