"""Presence samples on the real photos (issue 4), run in-process (the worker function itself).

The guardian is enrolled from obama/obama.jpg and shown from a DIFFERENT photo (obama2.jpg) beside
a child; a different adult (biden/) beside the same child must not count as the guardian.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.faces import BIDEN, CHILD_A, OBAMA, OBAMA_2, empty_scene, side_by_side
from core.config.identity import IdentityConfig
from identity.faces import worker
from identity.guardian import presence_worker

THRESHOLD = IdentityConfig().threshold


def frame(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB").resize((640, 480)))


@pytest.fixture(scope="module")
def enrolled() -> list[list[float]]:
    result = worker.enroll(OBAMA.read_bytes(), 80)
    assert result.error is None and result.encoding is not None
    return [result.encoding]


def test_guardian_beside_child_matches_and_is_not_encoded_again(enrolled) -> None:
    rgb = frame(side_by_side(OBAMA_2, CHILD_A))
    first = presence_worker.sample(rgb, enrolled, [], 0.0, THRESHOLD, 5.0)
    assert first.faces == 2 and first.matched, first
    assert first.distance is not None and first.distance < THRESHOLD
    assert first.encoded in (1, 2)
    again = presence_worker.sample(rgb, enrolled, first.tracks, 1.0, THRESHOLD, 5.0)
    assert again.matched and again.faces == 2 and again.encoded == 0
    stale = presence_worker.sample(rgb, enrolled, again.tracks, 6.0, THRESHOLD, 5.0)
    assert stale.matched and stale.encoded >= 1


def test_a_different_adult_beside_the_child_is_not_the_guardian(enrolled) -> None:
    rgb = frame(side_by_side(BIDEN, CHILD_A))
    result = presence_worker.sample(rgb, enrolled, [], 0.0, THRESHOLD, 5.0)
    assert result.faces == 2
    assert not result.matched
    assert result.distance is not None and result.distance > THRESHOLD + 0.1, result.distance
    # Still, on the next sample: the faces did not move, so they are not encoded again.
    again = presence_worker.sample(rgb, enrolled, result.tracks, 1.0, THRESHOLD, 5.0)
    assert not again.matched and again.encoded == 0


def test_child_alone_is_one_face_and_no_guardian(enrolled) -> None:
    rgb = frame(side_by_side(empty_scene(), CHILD_A))
    result = presence_worker.sample(rgb, enrolled, [], 0.0, THRESHOLD, 5.0)
    assert result.faces == 1 and not result.matched


def test_following_the_guardian_between_whole_picture_searches(enrolled) -> None:
    together = frame(side_by_side(OBAMA_2, CHILD_A))
    first = presence_worker.sample(together, enrolled, [], 0.0, THRESHOLD, 5.0)
    assert first.matched and first.faces == 2
    # Found again around where they were: still matched, the child still counted, nothing encoded.
    follow = presence_worker.sample(together, enrolled, first.tracks, 1.0, THRESHOLD, 5.0,
                                    full=False)
    assert follow.matched and follow.faces == 2 and follow.encoded == 0, follow
    assert follow.cpu_s < first.cpu_s
    # The guardian leaves: not there any more, so the whole picture is searched at once.
    alone = frame(side_by_side(empty_scene(), CHILD_A))
    gone = presence_worker.sample(alone, enrolled, follow.tracks, 2.0, THRESHOLD, 5.0,
                                  full=False)
    assert not gone.matched and gone.faces == 1, gone
    # Someone else takes the guardian's exact seat: followed like the guardian until the face's
    # encoding is refreshed (refresh_s, README), then no longer the guardian.
    other = frame(side_by_side(BIDEN, CHILD_A))
    swapped = presence_worker.sample(other, enrolled, follow.tracks, 5.5, THRESHOLD, 5.0,
                                     full=False)
    assert not swapped.matched and swapped.faces == 2 and swapped.encoded >= 1, swapped
