"""Transport-wide feedback packets, read back by a reader written from the draft's text
(draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1), not from the writer."""

from __future__ import annotations

import itertools
import struct

import pytest
from aiortc import rtp

from signaling.twcc import TransportFeedbackPacket, feedback, install, parse


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


def _symbols_chunked(symbols: list[int], kinds: list[str]) -> bytes:
    """Status chunks as a browser may write them: run lengths and one- and two-bit vectors."""
    chunks, pos = b"", 0
    for kind in kinds:
        if kind == "run":
            run = 1
            while pos + run < len(symbols) and symbols[pos + run] == symbols[pos]:
                run += 1
            chunks += struct.pack("!H", (symbols[pos] << 13) | run)
            pos += run
        elif kind == "one-bit":
            part = symbols[pos:pos + 14]
            assert all(s < 2 for s in part)
            chunks += struct.pack("!H", 0x8000 | sum(s << (13 - i) for i, s in enumerate(part)))
            pos += 14
        else:
            part = symbols[pos:pos + 7]
            chunks += struct.pack("!H", 0xC000 | sum(s << (12 - 2 * i) for i, s in enumerate(part)))
            pos += 7
    assert pos >= len(symbols)
    return chunks


def test_parse_reads_what_feedback_writes() -> None:
    start = 7_000_000_000
    arrivals = [start + i * 3_000 if i % 9 else None for i in range(1, 60)]
    arrivals[10] = start - 50_000  # reordered: a negative delta
    packet = feedback(sender_ssrc=1, media_ssrc=2, count=3, base=65500, arrivals=arrivals)
    base, got = parse(packet[12:])
    assert base == 65500 and len(got) == len(arrivals)
    for sent, read_back in zip(arrivals, got, strict=True):
        assert (sent is None) == (read_back is None)
        if sent is not None:
            assert abs(read_back - sent) <= 125


def test_parse_reads_run_lengths_and_one_bit_vectors() -> None:
    # 20 received in a run, 3 lost, 14 by a one-bit vector, then a large delta and a lost one
    symbols = [1] * 20 + [0] * 3 + [1, 0] * 7 + [2, 0]
    deltas = b"".join(struct.pack("!B", 4) for s in symbols if s == 1) + struct.pack("!h", -400)
    chunks = _symbols_chunked(symbols, ["run", "run", "one-bit", "two-bit"])
    fci = struct.pack("!HHI", 100, len(symbols), (5 << 8) | 1) + chunks + deltas
    base, got = parse(fci + b"\x00" * (-len(fci) % 4))
    assert base == 100 and len(got) == len(symbols)
    assert [a is None for a in got] == [s == 0 for s in symbols]
    received = [a for a in got if a is not None]
    assert received[0] == 5 * 64_000 + 1_000  # the reference time, then 4 ticks of 250 µs
    assert received[-1] == received[-2] - 100_000
    assert all(b - a == 1_000 for a, b in itertools.pairwise(received[:-1]))


@pytest.mark.parametrize("cut", [4, 9, 12, 13])
def test_parse_refuses_a_cut_short_feedback(cut: int) -> None:
    packet = feedback(1, 2, 0, 10, [1_000_000 + i * 70_000 for i in range(9)])  # large deltas
    with pytest.raises(ValueError):
        parse(packet[12:12 + cut])


def test_install_keeps_a_padded_feedback_and_the_reports_beside_it() -> None:
    """aiortc's own parse refuses the whole compound packet when padding leaves an odd length."""
    install()
    report = bytes(rtp.RtcpRrPacket(ssrc=9, reports=[]))
    twcc = feedback(1, 2, 0, 10, [1_000_000, 1_001_000, None, 1_003_000])
    fci = twcc[12:25]  # 8 bytes of header, one chunk, three one-byte deltas; then RTCP padding:
    body = twcc[4:12] + fci + b"\x00\x00\x03"
    padded = bytes([twcc[0] | 0x20, twcc[1]]) + struct.pack("!H", len(body) // 4) + body
    packets = rtp.RtcpPacket.parse(report + padded)
    assert isinstance(packets[0], rtp.RtcpRrPacket)
    assert isinstance(packets[1], TransportFeedbackPacket) and packets[1].media_ssrc == 2
    assert parse(packets[1].fci)[1][:3] == [1_000_000, 1_001_000, None]
