"""What a face worker does for one presence sample (issue 4); runs in identity's process pool.

Finding the faces: while the guardian is matched, only the neighbourhood of the guardian's face
is searched, scaled so the face is ~REFIND_FACE_PX wide (~1/4 of a whole-picture detection);
the other faces are carried over from the last whole-picture detection. Each `full` sample, and
whenever the guardian is not found where they were, the whole picture is searched at 320 wide
(identity.faces.worker's `detect_faces`/`keep_people`: same detector, same rule for ignoring small
false faces). Then encodings only for faces that need one (presence_policy.reuse):
a face that stayed where it was keeps its earlier distance until it is `refresh_s` old, and once
a guardian is matched the other faces are only counted, never encoded (a child's face is not what
we are looking for, and dlib cannot tell children apart anyway).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..faces import worker
from .presence_policy import Box, Track, reuse


@dataclass
class SampleResult:
    faces: int
    matched: bool
    distance: float | None  # best (smallest) distance to an enrolled guardian among the faces
    tracks: list[Track] = field(default_factory=list)
    encoded: int = 0
    cpu_s: float = 0.0
    boxes: list[Box] = field(default_factory=list)


def sample(rgb: np.ndarray, guardians: list[list[float]], tracks: list[Track], now: float,
           threshold: float, refresh_s: float, full: bool = True) -> SampleResult:
    started = time.process_time()
    people = None if full else _around_guardian(rgb, tracks, threshold)
    if people is None:
        people = worker.keep_people(worker.detect_faces(rgb))
    previous = reuse(people, tracks, now, refresh_s)
    known = np.asarray(guardians, dtype=np.float64) if guardians else None
    # Faces that continue an earlier track first: if one of them is the guardian, nothing new
    # needs encoding this time.
    out: list[Track | None] = [None if prev is None else Track(box, prev.distance, prev.encoded_at)
                               for box, prev in zip(people, previous, strict=True)]
    seen = [t.distance for t in out if t is not None and t.distance is not None]
    best = min(seen, default=None)
    encoded = 0
    for i, box in enumerate(people):
        if out[i] is not None:
            continue
        if known is not None and (best is None or best > threshold):
            enc = worker.face_lib().face_encodings(rgb, [box])[0]
            encoded += 1
            distance = float(np.min(np.linalg.norm(known - enc, axis=1)))
            out[i] = Track(box, distance, now)
            best = distance if best is None else min(best, distance)
        else:
            out[i] = Track(box, None, now - refresh_s)  # counted only: stale, so never reused
    tracks_out = [t for t in out if t is not None]
    matched = best is not None and best <= threshold
    return SampleResult(faces=len(people), matched=matched,
                        distance=None if best is None else round(best, 4), tracks=tracks_out,
                        encoded=encoded, cpu_s=time.process_time() - started, boxes=people)


REFIND_FACE_PX = 100  # dlib's HOG finds faces from 80 px without upsampling: some margin


def _around_guardian(rgb: np.ndarray, tracks: list[Track], threshold: float) -> list[Box] | None:
    """The last sample's faces, the matched guardian's looked for again only around where it
    was; None when no guardian is being followed or it is not there any more."""
    guardian = next((t for t in tracks if t.distance is not None and t.distance <= threshold),
                    None)
    if guardian is None:
        return None
    top, right, bottom, left = guardian.box
    size = max(bottom - top, right - left, 1)
    h, w = rgb.shape[:2]
    y0, x0 = max(0, top - size), max(0, left - size)
    y1, x1 = min(h, bottom + size), min(w, right + size)
    scale = min(1.0, REFIND_FACE_PX / size)
    crop = Image.fromarray(rgb[y0:y1, x0:x1])
    if scale < 1.0:
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))))
    found = worker.face_lib().face_locations(np.asarray(crop), number_of_times_to_upsample=0)
    if not found:
        return None
    t, r, b, left_ = max(found, key=lambda f: (f[1] - f[3]) * (f[2] - f[0]))
    box = (y0 + round(t / scale), x0 + round(r / scale), y0 + round(b / scale),
           x0 + round(left_ / scale))
    return [box, *(other.box for other in tracks if other is not guardian)]
