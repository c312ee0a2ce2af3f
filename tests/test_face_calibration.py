"""The configured face threshold against the calibration set (issue 14), through the live path.

Every photo of ../shared/faces/calibration is enrolled as an upload (worker.enroll of the file's
bytes) and filmed as bench.calibration films it (640x480, small motion, VP8 at 1 Mbit/s, decoded
as the node decodes), and the first sampled frame goes through worker.analyse. Every same-person
pair must be accepted and every different-person pair refused at the configured threshold: the
worst same pair is 0.594 and the closest impostor 0.622 (bench/baselines/
calibration-2026-12-02.json), so moving the threshold past either side fails one of the two tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from bench.calibration import Photo, live_frames, photos
from core.config.identity import MAX_THRESHOLD, IdentityConfig
from identity.faces import worker

CFG = IdentityConfig()
THRESHOLD = CFG.threshold


@dataclass
class Seen:
    photo: Photo
    enrolled: np.ndarray
    live: np.ndarray  # the encoding of the photo's first live frame


@pytest.fixture(scope="module")
def seen() -> list[Seen]:
    out = []
    for photo in photos(older=False):
        enrolled = worker.enroll(photo.path.read_bytes(), CFG.min_face_px, CFG.photo)
        assert enrolled.error is None, (photo.name, enrolled.message)
        (frame,) = live_frames(photo.path, count=1, blurred=None)
        assert frame.shape == (480, 640, 3)
        # The worker's own distance is |live - known|: one call gives the encoding for all pairs.
        result = worker.analyse(frame, known=enrolled.encoding)
        assert result.faces == 1 and result.encoding is not None, photo.name
        out.append(Seen(photo, np.asarray(enrolled.encoding), np.asarray(result.encoding)))
    return out


def _pairs(seen: list[Seen], same: bool) -> list[tuple[str, str, float]]:
    return [(a.photo.name, b.photo.name, float(np.linalg.norm(b.live - a.enrolled)))
            for a in seen for b in seen
            if a is not b and (a.photo.identity == b.photo.identity) is same]


def test_every_same_person_pair_is_accepted(seen) -> None:
    pairs = _pairs(seen, same=True)
    assert len(pairs) == 128  # 7 adults, 30 photos: every ordered pair of the same person
    refused = [p for p in pairs if p[2] > THRESHOLD]
    assert not refused, f"refused at {THRESHOLD}: {refused}"


def test_every_different_person_pair_is_refused(seen) -> None:
    pairs = _pairs(seen, same=False)
    assert len(pairs) == 30 * 29 - 128
    accepted = [p for p in pairs if p[2] <= THRESHOLD]
    assert not accepted, f"accepted at {THRESHOLD}: {accepted}"


def test_a_threshold_at_the_closest_impostor_is_refused() -> None:
    assert THRESHOLD < MAX_THRESHOLD
    with pytest.raises(ValueError, match="TC_FACE_THRESHOLD"):
        CFG.with_(threshold=MAX_THRESHOLD)
