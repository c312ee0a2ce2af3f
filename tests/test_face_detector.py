"""The face workers' two detectors on the real photos (issue 14, item 3): BlazeFace finds the
small faces HOG cannot, counts the guardian and the child as HOG does, and hands dlib boxes from
which the encoding is the same person's. bench/detector.py has the full curves.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.faces import CHILD_A, OBAMA, OBAMA_2, empty_scene, load_photo, side_by_side
from core.config import load_settings
from core.config.identity import IdentityConfig
from identity.faces import worker

FRAME = (640, 480)


def face_of(img: Image.Image) -> tuple[int, int, int, int]:
    """The photo's one face by HOG at full resolution (its faces are large)."""
    found = worker.face_lib().face_locations(np.asarray(img), number_of_times_to_upsample=1)
    assert len(found) == 1
    return found[0]


def small_face_frame(width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """obama2.jpg scaled so the face is `width` px wide, on a wall, and where its centre is."""
    img = load_photo(OBAMA_2)
    top, right, bottom, left = face_of(img)
    s = width / (right - left)
    scaled = img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.LANCZOS)
    canvas = empty_scene(FRAME)
    cx, cy = round((left + right) / 2 * s), round((top + bottom) / 2 * s)
    canvas.paste(scaled, (FRAME[0] // 2 - cx, FRAME[1] // 2 - cy))
    return np.asarray(canvas), (FRAME[0] // 2, FRAME[1] // 2)


def contains(box: tuple[int, int, int, int], point: tuple[int, int]) -> bool:
    top, right, bottom, left = box
    return left <= point[0] <= right and top <= point[1] <= bottom


def test_blazeface_finds_a_40_px_face_that_hog_misses() -> None:
    rgb, centre = small_face_frame(40)
    assert worker.detect_hog(rgb) == []  # HOG at 320 wide, as the workers ran it before
    found = worker.detect_blazeface(rgb)
    assert len(found) == 1 and contains(found[0], centre), found
    assert 25 <= found[0][1] - found[0][3] <= 60


@pytest.mark.parametrize("detect", [worker.detect_hog, worker.detect_blazeface])
def test_both_detectors_count_the_guardian_and_the_child(detect) -> None:
    rgb = np.asarray(side_by_side(OBAMA_2, CHILD_A).resize(FRAME))
    people = worker.keep_people(detect(rgb))
    assert len(people) == 2
    assert sorted((b[1] + b[3]) // 2 < FRAME[0] // 2 for b in people) == [False, True]
    assert worker.keep_people(detect(np.asarray(empty_scene(FRAME)))) == []


def test_the_encoding_from_a_blazeface_box_is_the_same_persons() -> None:
    """The enrolled encoding comes from a HOG box (enroll); live frames from BlazeFace's."""
    fr = worker.face_lib()
    enrolled = np.asarray(worker.enroll(OBAMA.read_bytes(), 80).encoding)
    rgb = np.asarray(side_by_side(OBAMA_2, CHILD_A).resize(FRAME))
    left = FRAME[0] // 2  # the guardian's half of the frame

    def guardian(boxes: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
        return next(b for b in boxes if (b[1] + b[3]) // 2 < left)

    hog, blaze = guardian(worker.detect_hog(rgb)), guardian(worker.detect_blazeface(rgb))
    from_hog = fr.face_encodings(rgb, [hog])[0]
    from_blaze = fr.face_encodings(rgb, [blaze])[0]
    assert np.linalg.norm(from_hog - from_blaze) < 0.1
    threshold = IdentityConfig().threshold
    assert np.linalg.norm(enrolled - from_blaze) < threshold - 0.05


def test_the_detector_is_a_setting(monkeypatch) -> None:
    assert load_settings().identity.detector == "blazeface"
    monkeypatch.setenv("TC_FACE_DETECTOR", "hog")
    assert load_settings().identity.detector == "hog"
    monkeypatch.setenv("TC_FACE_DETECTOR", "mtcnn")
    with pytest.raises(ValueError, match="TC_FACE_DETECTOR"):
        load_settings()
