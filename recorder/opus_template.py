"""An Opus stream description (OpusHead) for the muxer, without ever opening an Opus codec.

WebM players (Chromium among them) need the Opus `CodecPrivate` (the OpusHead header), which
FFmpeg's Matroska muxer takes from the stream's extradata. PyAV offers no setter for a mux
stream's extradata, but copies it from a template stream. So we build, once, a tiny Ogg Opus
file holding only the two header pages (RFC 7845), demux it, and use its stream as the template:
the recorder thus gets correct Opus headers while no encoder or decoder is ever created.
"""

from __future__ import annotations

import io
import struct
from functools import cache

import av
from av.audio.stream import AudioStream

PRE_SKIP = 312  # what libopus (and browsers' encoders) announce at 48 kHz


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_TABLE = _crc_table()


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _TABLE[((crc >> 24) & 0xFF) ^ byte]
    return crc


def _page(payload: bytes, seq: int, flags: int, granule: int = 0) -> bytes:
    lacing = [255] * (len(payload) // 255) + [len(payload) % 255]
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, 0x7E5EC0DE, seq, 0,
                         len(lacing)) + bytes(lacing)
    page = bytearray(header + payload)
    struct.pack_into("<I", page, 22, _ogg_crc(bytes(page)))
    return bytes(page)


def opus_head(channels: int = 2) -> bytes:
    return struct.pack("<8sBBHIhB", b"OpusHead", 1, channels, PRE_SKIP, 48000, 0, 0)


def ogg_opus_headers(channels: int = 2) -> bytes:
    tags = b"OpusTags" + struct.pack("<I", 10) + b"teleconsul" + struct.pack("<I", 0)
    silence = b"\xf8\xff\xfe"  # one 20 ms Opus frame of silence: the demuxer wants a packet
    return (_page(opus_head(channels), 0, 0x02) + _page(tags, 1, 0x00)
            + _page(silence, 2, 0x04, granule=PRE_SKIP + 960))


@cache
def _template_container() -> av.container.InputContainer:
    return av.open(io.BytesIO(ogg_opus_headers()), format="ogg")


def opus_template() -> AudioStream:
    """The template stream (48 kHz stereo Opus, with OpusHead as extradata)."""
    return _template_container().streams.audio[0]
