"""The transport-wide congestion control feedback packet
(draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1), both ways: the node's receivers
write it (signaling/receiveside.py) and read a browser's about the node's own video
(signaling/sendside.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from aiortc import rtp

_TICK_US = 250  # receive deltas are in multiples of 250 µs
_REFERENCE_US = 64_000  # the reference time is in multiples of 64 ms
_RTPFB, _FMT = 205, 15


def feedback(sender_ssrc: int, media_ssrc: int, count: int, base: int,
             arrivals: list[int | None]) -> bytes:
    """One feedback packet: `arrivals[i]` is the arrival (µs) of sequence `base + i`, or None.

    Every chunk is a two-bit status vector (7 packets), which can say anything; run-length
    chunks would be shorter but a packet every 50 ms is small either way.
    """
    first = next(a for a in arrivals if a is not None)
    reference = first // _REFERENCE_US
    previous = reference * _REFERENCE_US
    chunks, deltas = [], []
    for start in range(0, len(arrivals), 7):
        chunk = 0xC000
        for i, arrival in enumerate(arrivals[start:start + 7]):
            symbol = 0
            if arrival is not None:
                delta = round((arrival - previous) / _TICK_US)
                previous += delta * _TICK_US
                if 0 <= delta <= 0xFF:
                    symbol = 1
                    deltas.append(struct.pack("!B", delta))
                else:
                    symbol = 2
                    deltas.append(struct.pack("!h", max(-0x8000, min(0x7FFF, delta))))
            chunk |= symbol << (12 - 2 * i)
        chunks.append(struct.pack("!H", chunk))
    fci = struct.pack("!HHI", base & 0xFFFF, len(arrivals),
                      ((reference & 0xFFFFFF) << 8) | (count & 0xFF))
    body = struct.pack("!II", sender_ssrc, media_ssrc) + fci + b"".join(chunks + deltas)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!BBH", 0x80 | _FMT, _RTPFB, len(body) // 4) + body


def parse(fci: bytes) -> tuple[int, list[int | None]]:
    """A feedback packet's FCI (after the two SSRCs): (base sequence, arrival in µs or None for
    each sequence from the base on). The arrivals are on the browser's clock, in a time base of
    its choosing. ValueError if the FCI is cut short or uses the reserved symbol."""
    if len(fci) < 8:
        raise ValueError("transport-wide feedback is too short")
    base, count, reference = struct.unpack_from("!HHI", fci)
    offset, symbols = 8, bytearray()
    while len(symbols) < count:
        if offset + 2 > len(fci):
            raise ValueError("transport-wide feedback has too few status chunks")
        chunk = fci[offset] << 8 | fci[offset + 1]
        offset += 2
        if not chunk & 0x8000:  # run length: a symbol, then how many
            symbols += bytes(((chunk >> 13) & 0x3,)) * (chunk & 0x1FFF)
        elif not chunk & 0x4000:  # fourteen one-bit symbols
            symbols += bytes((chunk >> (13 - i)) & 0x1 for i in range(14))
        else:  # seven two-bit symbols
            symbols += bytes((chunk >> (12 - 2 * i)) & 0x3 for i in range(7))
    at = (reference >> 8) * _REFERENCE_US
    arrivals: list[int | None] = []
    for symbol in symbols[:count]:
        if symbol == 0:
            arrivals.append(None)
            continue
        if symbol == 1 and offset < len(fci):
            delta = fci[offset]
            offset += 1
        elif symbol == 2 and offset + 2 <= len(fci):
            delta = struct.unpack_from("!h", fci, offset)[0]
            offset += 2
        else:
            raise ValueError("transport-wide feedback has a reserved symbol or too few deltas")
        at += delta * _TICK_US
        arrivals.append(at)
    return base, arrivals


@dataclass
class TransportFeedbackPacket(rtp.RtcpRtpfbPacket):
    """aiortc's RTPFB packet, for the transport-wide format: the FCI kept whole."""

    fci: bytes = b""


_original_rtpfb_parse = rtp.RtcpRtpfbPacket.parse


def _parse_rtpfb(cls: type, data: bytes, fmt: int) -> rtp.RtcpRtpfbPacket:
    if fmt != _FMT:
        return _original_rtpfb_parse(data, fmt)
    if len(data) < 8:
        raise ValueError("RTCP RTP feedback length is invalid")
    ssrc, media_ssrc = struct.unpack_from("!LL", data)
    return TransportFeedbackPacket(fmt=fmt, ssrc=ssrc, media_ssrc=media_ssrc, fci=data[8:])


def install() -> None:
    """Keep transport-wide feedback readable, in this process. Idempotent.

    aiortc parses every RTPFB packet as a generic NACK: it reads a transport-wide FCI as a list
    of bogus lost sequence numbers (thousands of them, on every feedback) and, when the padding
    it strips leaves a length that is not a multiple of four, refuses the whole compound packet,
    receiver reports and all."""
    if not callable(getattr(rtp.RtcpRtpfbPacket, "parse", None)):
        raise RuntimeError("aiortc's RtcpRtpfbPacket no longer has parse; check "
                           "signaling/twcc.py against the installed aiortc")
    rtp.RtcpRtpfbPacket.parse = classmethod(_parse_rtpfb)  # type: ignore[assignment]


class RawRtcp:
    """An already-built RTCP packet, for aiortc's `_send_rtcp` (which calls bytes() on it)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __bytes__(self) -> bytes:
        return self._data
