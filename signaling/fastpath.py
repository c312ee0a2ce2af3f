"""Cheaper equivalents of aiortc helpers that run on every RTP packet the node relays.

Profiled at N = 4 consultations (bench/README.md), the node spends its time across aiortc's
whole per-packet path; some of its pieces cost more than they need to, for the same result:

- `clock.current_ntp_time`, which aiortc's sender calls twice per packet (abs-send-time and
  the sender-report clock), goes through a timezone-aware datetime and a timedelta:
  0.7 µs a call measured here (1.4 on the loaded machine), against 0.25 µs from `time.time()`.
- the receiver's `depayload` parses each VP8 payload descriptor into an object only to throw it
  away: 1.0 µs a packet (1.9 loaded), against 0.26 µs for finding where the VP8 data starts.
- `RtpPacket.parse` (every packet in: 9 % of the event loop's busy time at N = 4 on uvloop)
  slices the fixed header, builds a HeaderExtensions twice, and lists every extension before
  looking each id up in a chain of comparisons (`parse_rtp` below).

`install` swaps them in process-wide (like aiortc's codec tables; the test clients of the same
process get them too) and refuses loudly if aiortc moved them. tests/test_fastpath.py checks the
results are aiortc's own.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from collections.abc import Callable
from typing import Any

from aiortc import clock, rtcrtpreceiver, rtp

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01 (RFC 5905)

_original_depayload: Callable[[Any, bytes], bytes] = rtcrtpreceiver.depayload
_original_ntp: Callable[[], int] = clock.current_ntp_time
_original_parse = rtp.RtpPacket.parse
_original_configure = rtp.HeaderExtensionsMap.configure
# aiortc's own default for a parse without a map: one shared, never configured
_DEFAULT_MAP: rtp.HeaderExtensionsMap = rtp.RtpPacket.parse.__func__.__defaults__[0]


def current_ntp_time() -> int:
    """Now as a 64-bit NTP timestamp (32.32 fixed point), as aiortc's clock gives it."""
    now = time.time()
    seconds = int(now)
    return ((seconds + NTP_UNIX_OFFSET) << 32) | int((now - seconds) * 4294967296.0)


def vp8_payload(payload: bytes) -> bytes:
    """The VP8 data after an RTP payload descriptor (RFC 7741 §4.2); ValueError if truncated."""
    size = len(payload)
    if size < 1:
        raise ValueError("VPX descriptor is too short")
    pos = 1
    if payload[0] & 0x80:  # X: extended control bits
        if size < 2:
            raise ValueError("VPX descriptor has truncated extended bits")
        extension = payload[1]
        pos = 2
        if extension & 0x80:  # I: picture ID, 7 or 15 bits
            if size < pos + 1 or (payload[pos] & 0x80 and size < pos + 2):
                raise ValueError("VPX descriptor has truncated PictureID")
            pos += 2 if payload[pos] & 0x80 else 1
        if extension & 0x40:  # L: TL0PICIDX
            if size < pos + 1:
                raise ValueError("VPX descriptor has truncated TL0PICIDX")
            pos += 1
        if extension & 0x30:  # T or K: one byte between them
            if size < pos + 1:
                raise ValueError("VPX descriptor has truncated T/K")
            pos += 1
    return payload[pos:]


def depayload(codec: Any, payload: bytes) -> bytes:
    if codec.name == "VP8":
        return vp8_payload(payload)
    return _original_depayload(codec, payload)


def install() -> None:
    """Use the cheaper helpers from now on, in this process. Idempotent."""
    if not callable(getattr(clock, "current_ntp_time", None)) or not callable(
            getattr(rtcrtpreceiver, "depayload", None)) or not hasattr(
            rtp.HeaderExtensionsMap(), _IDS_ATTR) or {
            f.name for f in dataclasses.fields(rtp.HeaderExtensions)} != {
            name for name, _ in _DECODERS}:
        raise RuntimeError("aiortc no longer has clock.current_ntp_time, "
                           "rtcrtpreceiver.depayload, or the header extensions fastpath.parse_rtp "
                           "knows; check signaling/fastpath.py against the installed aiortc")
    clock.current_ntp_time = current_ntp_time
    rtcrtpreceiver.depayload = depayload
    rtp.HeaderExtensionsMap.configure = _configure  # type: ignore[method-assign]
    rtp.RtpPacket.parse = classmethod(parse_rtp)  # type: ignore[assignment]


# -- RTP parse --------------------------------------------------------------------------------

_HEADER = struct.Struct("!BBHLL")
_IDS_ATTR = "_HeaderExtensionsMap__ids"
_TABLE_ATTR = "_fastpath_table"


def _abs_send_time(value: bytes) -> int:
    if len(value) != 3:
        raise ValueError("RTP abs-send-time extension is not 3 bytes")
    return int.from_bytes(value, "big")


def _transmission_offset(value: bytes) -> int:
    if len(value) != 3:
        raise ValueError("RTP transmission offset extension is not 3 bytes")
    return int.from_bytes(value, "big", signed=True)


def _audio_level(value: bytes) -> tuple[bool, int]:
    if len(value) != 1:
        raise ValueError("RTP audio level extension is not 1 byte")
    return value[0] & 0x80 == 0x80, value[0] & 0x7F


def _transport_sequence_number(value: bytes) -> int:
    if len(value) != 2:
        raise ValueError("RTP transport sequence number extension is not 2 bytes")
    return int.from_bytes(value, "big")


# In the order aiortc's HeaderExtensionsMap.get tests them: an id configured twice goes to the
# first.
_DECODERS: tuple[tuple[str, Callable[[bytes], Any]], ...] = (
    ("mid", lambda value: value.decode("utf8")),
    ("repaired_rtp_stream_id", lambda value: value.decode("ascii")),
    ("rtp_stream_id", lambda value: value.decode("ascii")),
    ("abs_send_time", _abs_send_time),
    ("transmission_offset", _transmission_offset),
    ("audio_level", _audio_level),
    ("transport_sequence_number", _transport_sequence_number),
)


def _table(extensions_map: rtp.HeaderExtensionsMap) -> dict[int, tuple[str, Callable]]:
    """Extension id → (HeaderExtensions field, decoder), as the map is configured now."""
    ids = getattr(extensions_map, _IDS_ATTR)
    table: dict[int, tuple[str, Callable]] = {}
    for name, decode in _DECODERS:
        x_id = getattr(ids, name)
        if x_id is not None:
            table.setdefault(x_id, (name, decode))
    return table


def _configure(self: rtp.HeaderExtensionsMap, parameters: Any) -> None:
    _original_configure(self, parameters)
    setattr(self, _TABLE_ATTR, _table(self))


def _extensions(table: dict[int, tuple[str, Callable]], profile: int,
                value: bytes) -> rtp.HeaderExtensions:
    values = rtp.HeaderExtensions()
    pos, end = 0, len(value)
    if profile == 0xBEDE:  # one-byte headers (RFC 8285 §4.2)
        while pos < end:
            byte = value[pos]
            pos += 1
            if not byte:  # padding
                continue
            x_end = pos + (byte & 0x0F) + 1
            if x_end > end:
                raise ValueError("RTP one-byte header extension value is truncated")
            entry = table.get(byte >> 4)
            if entry is not None:
                setattr(values, entry[0], entry[1](value[pos:x_end]))
            pos = x_end
    elif profile == 0x1000:  # two-byte headers (§4.3)
        while pos < end:
            x_id = value[pos]
            if not x_id:
                pos += 1
                continue
            if pos + 2 > end:
                raise ValueError("RTP two-byte header extension is truncated")
            x_end = pos + 2 + value[pos + 1]
            if x_end > end:
                raise ValueError("RTP two-byte header extension value is truncated")
            entry = table.get(x_id)
            if entry is not None:
                setattr(values, entry[0], entry[1](value[pos + 2:x_end]))
            pos = x_end
    return values


def parse_rtp(cls: type[rtp.RtpPacket], data: bytes,
              extensions_map: rtp.HeaderExtensionsMap = _DEFAULT_MAP) -> rtp.RtpPacket:
    """aiortc's `RtpPacket.parse`, in fewer steps: one struct call for the fixed header, no
    throw-away HeaderExtensions, one pass over the extensions with a table built when the map is
    configured. A malformed extension value is a ValueError (aiortc lets struct.error escape,
    which ends the receiving transport instead of dropping the packet)."""
    size = len(data)
    if size < 12:
        raise ValueError("RTP packet length is less than 12 bytes")
    first, m_pt, sequence_number, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError("RTP packet has invalid version")
    cc = first & 0x0F
    pos = 12 + 4 * cc
    if size < pos:
        raise ValueError("RTP packet has truncated CSRC")
    packet = cls.__new__(cls)
    packet.version = 2
    packet.marker = m_pt >> 7
    packet.payload_type = m_pt & 0x7F
    packet.sequence_number = sequence_number
    packet.timestamp = timestamp
    packet.ssrc = ssrc
    packet.csrc = list(struct.unpack_from(f"!{cc}L", data, 12)) if cc else []
    packet.padding_size = 0
    if first & 0x10:
        if size < pos + 4:
            raise ValueError("RTP packet has truncated extension profile / length")
        profile = (data[pos] << 8) | data[pos + 1]
        length = ((data[pos + 2] << 8) | data[pos + 3]) * 4
        pos += 4
        if size < pos + length:
            raise ValueError("RTP packet has truncated extension value")
        table = getattr(extensions_map, _TABLE_ATTR, None)
        if table is None:
            table = _table(extensions_map)
        packet.extensions = _extensions(table, profile, data[pos:pos + length])
        pos += length
    else:
        packet.extensions = rtp.HeaderExtensions()
    if first & 0x20:
        padding = data[-1]
        if not padding or padding > size - pos:
            raise ValueError("RTP packet padding length is invalid")
        packet.padding_size = padding
        packet.payload = data[pos:-padding]
    else:
        packet.payload = data[pos:]
    return packet
