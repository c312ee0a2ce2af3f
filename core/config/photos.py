"""Bounds on a reference photo (TC_FACE_*_PHOTO_*): checked from its header before anything
decodes it (identity/faces/image_check.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PhotoLimits:
    """The largest and smallest reference photo accepted, in pixels (either orientation).

    16 Mpx holds a 12 Mpx phone photo (4032x3024) whole; a face worker then peaks at ~+250 MB.
    Below 64 px a side there is no face of the 80 px enrollment needs; a longer side over 4x the
    shorter is a strip, not a portrait.
    """

    max_side: int = 4096
    max_pixels: int = 4096 * 4096
    min_side: int = 64
    max_aspect: float = 4.0

    def checked(self) -> PhotoLimits:
        if not 0 < self.min_side <= self.max_side or self.max_pixels < self.min_side ** 2:
            raise ValueError(f"photo limits: need 0 < min side <= max side and enough pixels "
                             f"({self})")
        if self.max_aspect < 1:
            raise ValueError(f"TC_FACE_MAX_PHOTO_ASPECT={self.max_aspect}: at least 1")
        return self
