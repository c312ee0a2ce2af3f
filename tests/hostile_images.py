"""Hostile reference photos (issue 17): real, decodable images whose size or end is the attack."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def blank_png(width: int, height: int) -> bytes:
    """A valid black PNG of 1 bit a pixel, written row by row: 13000x13000 is 20 KB on the wire and
    169 MB once decoded (Pillow would need those 169 MB just to write it)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    deflate = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + the row's bits
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def encoded(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def cut_short(data: bytes, share: float = 0.7) -> bytes:
    """The first `share` of a file: an upload that stopped part-way."""
    return data[:int(len(data) * share)]
