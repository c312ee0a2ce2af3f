"""A reference photo's size, checked from its header before anything decodes it (issue 17).

Pillow only warns below 2 x MAX_IMAGE_PIXELS (179 Mpx), so a 20 KB PNG of 13000x13000 was decoded
and took a face worker to 1.1 GB for 4 s; a 30000x2 PNG failed with a 500. A reference photo needs
neither: the limits (PhotoLimits, TC_FACE_*_PHOTO_* in core/config/) bound what a worker will
ever decode. `header` runs on the event loop: PNG's size is at a fixed offset, and a JPEG's frame
header is looked for among at most MAX_SEGMENTS segments, slicing only (no decompression, no copy of
the body); when it is not found there the worker decides after Pillow has read the header
(`refusal` again), still before decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.config.photos import PhotoLimits

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Real JPEGs carry a handful of segments (APPn, DQT) before the frame header; past this many the
# worker's own header read decides.
MAX_SEGMENTS = 64
# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0..7: no length field


@dataclass(frozen=True)
class Header:
    format: str  # "JPEG" | "PNG", as Pillow names them
    width: int
    height: int


@dataclass(frozen=True)
class Refusal:
    code: str  # image_too_large | bad_image
    message: str


def header(data: bytes) -> Header | None:
    """The format and size from a PNG's IHDR or a JPEG's frame header; None when not found."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return Header("PNG", int.from_bytes(data[16:20]), int.from_bytes(data[20:24]))
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    for _ in range(MAX_SEGMENTS):
        if data[at:at + 1] != b"\xff" or len(data) < at + 4:
            return None
        marker = data[at + 1]
        if marker == 0xFF or marker in _STANDALONE:  # a fill byte, or a marker without a length
            at += 1 if marker == 0xFF else 2
            continue
        if marker in _SOF:
            if len(data) < at + 9:
                return None
            return Header("JPEG", int.from_bytes(data[at + 7:at + 9]),
                          int.from_bytes(data[at + 5:at + 7]))
        if marker in (0xD9, 0xDA):  # the end, or scan data, before any frame header
            return None
        at += 2 + int.from_bytes(data[at + 2:at + 4])
    return None


def refusal(width: int, height: int, limits: PhotoLimits) -> Refusal | None:
    """Why a photo of this size is not taken as a reference, or None when it may be decoded."""
    size = f"{width}x{height}"
    long, short = max(width, height), min(width, height)
    if long > limits.max_side or width * height > limits.max_pixels:
        return Refusal("image_too_large", f"the photo is {size}; at most {limits.max_side} px a "
                       f"side and {limits.max_pixels / 1e6:.1f} megapixels are accepted")
    if short < limits.min_side:
        return Refusal("bad_image", f"the photo is {size}; at least {limits.min_side} px a side "
                       "is needed")
    if long > limits.max_aspect * short:
        return Refusal("bad_image", f"the photo is {size}; its longer side may be at most "
                       f"{limits.max_aspect:g} times the shorter")
    return None

