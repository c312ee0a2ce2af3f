"""Face pipeline on the real photos (../shared/faces): thresholds, enrollment errors, liveness
geometry. Runs the worker functions in-process (the pool runs the very same functions)."""

from __future__ import annotations

import io
import itertools
import random

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFile, ImageOps

from bench.faces import (
    ADULT_A,
    ADULT_B,
    BIDEN,
    FACES,
    OBAMA,
    OBAMA_2,
    TWO_PEOPLE,
    empty_scene,
    head_and_shoulders,
    load_photo,
)
from core.config.identity import CHALLENGES, IdentityConfig
from core.config.photos import PhotoLimits
from identity.doctor.frame_checks import frame_problem
from identity.doctor.fusion import fused_distance, fused_verdict
from identity.doctor.liveness import DONE, WRONG, challenge_sequence, judge, rival_turn
from identity.faces import image_check, worker
from identity.faces.geometry import (
    Pose,
    blinked,
    challenge_done,
    eye_aspect_ratio,
    pose_from_landmarks,
    turned,
)
from tests.hostile_images import blank_png, cut_short, encoded

THRESHOLD = IdentityConfig().threshold
OBAMA_480 = FACES / "obama" / "obama-480p.jpg"
BIDEN_1 = FACES / "biden" / "biden.jpg"


def _encoding(path) -> np.ndarray:
    result = worker.enroll(path.read_bytes(), 80)
    assert result.error is None, result.message
    return np.asarray(result.encoding)


def _jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def encodings() -> dict[str, np.ndarray]:
    paths = {"obama": OBAMA, "obama2": OBAMA_2, "obama480": OBAMA_480, "biden": BIDEN,
             "biden1": BIDEN_1, "adult_a": ADULT_A, "adult_b": ADULT_B}
    return {k: _encoding(p) for k, p in paths.items()}


@pytest.mark.parametrize("a,b", [("obama", "obama2"), ("obama", "obama480"),
                                 ("obama2", "obama480"), ("biden", "biden1")])
def test_same_person_is_accepted(encodings, a: str, b: str) -> None:
    assert np.linalg.norm(encodings[a] - encodings[b]) <= THRESHOLD


@pytest.mark.parametrize("a,b", [("obama", "biden"), ("obama2", "biden1"), ("obama", "adult_a"),
                                 ("obama2", "adult_b"), ("biden", "adult_a"),
                                 ("adult_a", "adult_b")])
def test_different_people_are_refused(encodings, a: str, b: str) -> None:
    assert np.linalg.norm(encodings[a] - encodings[b]) > THRESHOLD


def test_live_frame_analysis_matches_the_enrolled_doctor(encodings) -> None:
    """A 640x480 camera-like frame: detection on a 320-wide copy, encoding on the full frame."""
    for photo, known, match in ((OBAMA_2, "obama", True), (BIDEN, "obama", False)):
        frame = np.asarray(head_and_shoulders(photo).resize((640, 480)))
        result = worker.analyse(frame, known=list(encodings[known]), landmarks=True,
                                thumbnail=True)
        assert result.faces == 1
        assert (result.distance <= THRESHOLD) is match, result.distance
        assert result.landmarks and result.thumbnail and result.thumbnail[:2] == b"\xff\xd8"
        with Image.open(io.BytesIO(result.thumbnail)) as thumb:
            assert max(thumb.size) <= worker.THUMB_PX


def test_a_turn_goes_through_the_poses_between_a_swapped_photo_jumps(encodings) -> None:
    """obama2 has the head turned to one side, obama.jpg faces the camera, obama2's mirror image
    is turned to the other side: the three in order are a head turn (the browser test's clip);
    obama2 straight to its mirror is a photo swapped in front of the camera."""
    def yaw_of(img: Image.Image) -> float:
        result = worker.analyse(np.asarray(img.resize((640, 480))),
                                known=list(encodings["obama"]), landmarks=True)
        assert result.distance <= THRESHOLD
        return pose_from_landmarks(result.landmarks).yaw

    turned_shot = head_and_shoulders(OBAMA_2)
    side, front, other_side = (yaw_of(turned_shot), yaw_of(head_and_shoulders(OBAMA)),
                               yaw_of(ImageOps.mirror(turned_shot)))
    assert side < -0.1 < front < 0.1 < other_side
    assert turned([side, front, other_side], "left")
    assert turned([other_side, front, side], "right")
    assert not turned([side, front, other_side], "right")
    # Swapped photos: one jump, however often repeated, is never a turn.
    assert not turned([side, side, other_side, other_side], "left")
    assert not turned([side, other_side, side, other_side], "left")
    assert not turned([other_side, side], "right")


def test_a_still_photo_under_pan_and_zoom_does_not_turn() -> None:
    """The test clips' pan/zoom of one still: the yaw ratio barely moves, so no turn is seen."""
    shot = head_and_shoulders(OBAMA)
    yaws = []
    for zoom, dx in ((1.0, 0), (1.08, 12), (1.04, -10), (1.1, 5)):
        w, h = shot.width / zoom, shot.height / zoom
        x0 = (shot.width - w) / 2 + dx
        frame = shot.resize((640, 480), box=(x0, (shot.height - h) / 2, x0 + w,
                                             (shot.height + h) / 2))
        result = worker.analyse(np.asarray(frame), landmarks=True)
        yaws.append(pose_from_landmarks(result.landmarks).yaw)
    assert max(yaws) - min(yaws) < 0.05
    poses = [Pose(0.3, y) for y in yaws]
    assert not challenge_done("turn_left", poses) and not challenge_done("turn_right", poses)
    assert not challenge_done("blink", poses)


# -- enrollment errors ------------------------------------------------------------------------


def test_enrollment_accepts_one_clear_face() -> None:
    result = worker.enroll(OBAMA.read_bytes(), 80)
    assert result.error is None and result.faces == 1 and len(result.encoding) == 128


def test_enrollment_accepts_png() -> None:
    out = io.BytesIO()
    load_photo(OBAMA).save(out, "PNG")
    assert worker.enroll(out.getvalue(), 80).error is None


def test_enrollment_refuses_a_photo_without_a_face() -> None:
    result = worker.enroll(_jpeg(empty_scene((640, 480))), 80)
    assert result.error == "no_face" and result.encoding is None


def test_enrollment_refuses_several_faces() -> None:
    result = worker.enroll(TWO_PEOPLE.read_bytes(), 80)
    assert result.error == "several_faces" and result.faces == 2


def test_enrollment_refuses_a_face_too_small() -> None:
    small = ImageOps.contain(load_photo(OBAMA), (200, 250))
    result = worker.enroll(_jpeg(small), 80)
    assert result.error == "face_too_small" and 0 < result.face_px < 80


def test_enrollment_refuses_unreadable_and_unsupported_images() -> None:
    assert worker.enroll(b"\xff\xd8\xff\xe0 not really a jpeg", 80).error == "unreadable_image"
    assert worker.enroll(b"", 80).error == "unreadable_image"
    out = io.BytesIO()
    load_photo(OBAMA).save(out, "GIF")
    assert worker.enroll(out.getvalue(), 80).error == "unsupported_format"


def test_enrollment_refuses_a_photo_cut_short() -> None:
    """Issue 17 (4): face_recognition turns Pillow's LOAD_TRUNCATED_IMAGES on when imported, and
    a JPEG cut at 70% was padded with grey and enrolled. A reference must be the whole photo."""
    worker.initialise()
    assert ImageFile.LOAD_TRUNCATED_IMAGES  # what the worker runs with: face_recognition's
    jpeg = OBAMA.read_bytes()
    png = encoded(load_photo(OBAMA), "PNG")
    for data in (cut_short(jpeg), cut_short(png), jpeg[:-2]):  # [:-2]: only the end marker lost
        result = worker.enroll(data, 80)
        assert result.error == "bad_image" and result.encoding is None, result
        assert "cut short" in result.message
    assert ImageFile.LOAD_TRUNCATED_IMAGES  # face_recognition's own setting is left alone
    assert worker.enroll(jpeg, 80).error is None and worker.enroll(png, 80).error is None


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow only warns
def test_enrollment_refuses_sizes_past_the_limits() -> None:
    """Issue 17 (5): a 20 KB PNG of 13000x13000 was decoded (1.1 GB, 4 s) and a 30000x2 PNG
    raised ValueError (a 500); the size is now refused from the header."""
    limits = PhotoLimits()
    cases = [(blank_png(13000, 13000), "image_too_large", (13000, 13000)),
             (encoded(Image.new("RGB", (30000, 2)), "PNG"), "image_too_large", (30000, 2)),
             (encoded(empty_scene((4200, 1400)), "JPEG"), "image_too_large", (4200, 1400)),
             (encoded(Image.new("RGB", (48, 48)), "PNG"), "bad_image", (48, 48)),
             (encoded(empty_scene((1600, 300)), "JPEG"), "bad_image", (1600, 300))]
    for data, code, size in cases:
        result = worker.enroll(data, 80)  # the default limits
        assert (result.error, (result.width, result.height)) == (code, size), result.message
        found = image_check.header(data)  # the node's own check, before any worker is asked
        assert found is not None and (found.width, found.height) == size
        refused = image_check.refusal(found.width, found.height, limits)
        assert refused is not None and refused.code == code
    edge = encoded(ImageOps.pad(load_photo(OBAMA), (limits.max_side, limits.max_side // 4)),
                   "JPEG")  # the largest side and the thinnest strip still accepted
    assert image_check.header(edge) is not None
    assert image_check.refusal(limits.max_side, limits.max_side // 4, limits) is None
    assert worker.enroll(edge, 80).error is None


# -- liveness geometry ------------------------------------------------------------------------


def _eye(height: float) -> list[tuple[float, float]]:
    """Six landmarks of an eye 30 px wide whose lids are `height` px apart."""
    return [(0, 0), (10, -height / 2), (20, -height / 2), (30, 0), (20, height / 2),
            (10, height / 2)]


def test_eye_aspect_ratio() -> None:
    assert eye_aspect_ratio(_eye(9)) == pytest.approx(0.3)
    assert eye_aspect_ratio(_eye(3)) == pytest.approx(0.1)
    assert eye_aspect_ratio([(0, 0)] * 6) == 0.0


def test_blink_needs_open_closed_open() -> None:
    ears = [eye_aspect_ratio(_eye(h)) for h in (9, 9, 3, 2, 9)]
    assert blinked(ears)
    assert not blinked([0.3, 0.3, 0.3, 0.3])  # eyes open throughout: a still photo
    assert not blinked([0.3, 0.1, 0.1])  # closed and never reopened
    assert not blinked([0.1, 0.1, 0.3])  # starts closed: no open → closed transition
    assert not blinked([0.3, 0.22, 0.3])  # a squint is not a blink
    assert blinked([0.3, 0.2, 0.24])  # exactly at both thresholds


def test_turn_direction_and_threshold() -> None:
    assert turned([0.0, 0.1, 0.2], "left")
    assert not turned([0.0, 0.1, 0.19], "left")
    assert not turned([0.0, 0.1, 0.2], "right")
    assert turned([0.1, 0.0, -0.1], "right")
    assert not turned([0.3, 0.0, 0.15], "left")  # must move AFTER the low point by 0.2
    assert turned([0.1, 0.0, 0.08, 0.16, 0.22], "left")  # measured from the lowest point
    assert turned([0.0, 0.12, 0.24], "left")  # a quick turn, seen once on its way
    assert not turned([0.0, 0.25], "left")  # a jump: no pose in between
    assert not turned([0.0, 0.01, 0.0, 0.25, 0.26], "left")  # a jump after jitter
    assert challenge_done("turn_right", [Pose(0.3, 0.1), Pose(0.3, 0.0), Pose(0.3, -0.12)])
    with pytest.raises(ValueError):
        challenge_done("nod", [])


# -- sequence liveness (identity/doctor/liveness.py) -----------------------------------------------

OPEN, SHUT = 0.3, 0.1
RIGHT, FRONT, LEFT = -0.19, -0.01, 0.19  # obama2, obama.jpg, obama2 mirrored (measured yaws)


def _frames(yaws: list[float], ears: list[float] | None = None, start: float = 0.0
            ) -> list[tuple[Pose, float]]:
    """Poses at 10 frames a second from `start` (their arrival times)."""
    ears = ears or [OPEN] * len(yaws)
    return [(Pose(e, y), start + 0.1 * i) for i, (y, e) in enumerate(zip(yaws, ears, strict=True))]


def test_a_step_passes_on_the_asked_action_after_its_announcement() -> None:
    left_turn = [RIGHT, RIGHT, FRONT, FRONT, LEFT]
    step = judge("turn_left", 1.0, _frames(left_turn, start=1.05))
    assert step.verdict == DONE and step.early == 0
    blink = judge("blink", 1.0, _frames([FRONT] * 5, [OPEN, OPEN, SHUT, OPEN, OPEN], 1.05))
    assert blink.verdict == DONE


def test_an_action_done_before_the_announcement_does_not_count() -> None:
    """The clip turned left, then the step was announced: only the held pose is judged."""
    frames = _frames([RIGHT, FRONT, LEFT, LEFT, LEFT, LEFT], start=0.0)  # arrive 0.0 … 0.5
    step = judge("turn_left", 0.25, frames)  # announced after the turn's middle pose arrived
    assert step.verdict is None and step.early == 3
    assert judge("turn_left", -1.0, frames).verdict == DONE  # the same frames, asked in time
    blink = _frames([FRONT] * 6, [OPEN, SHUT, OPEN, OPEN, OPEN, OPEN])
    assert judge("blink", 0.15, blink).verdict is None  # blinked at 0.1, asked at 0.15


def test_the_actions_in_the_wrong_order_fail() -> None:
    """Asked to turn left, the clip turns right first (its next action): evidence of a replay."""
    step = judge("turn_left", 0.0, _frames([LEFT, FRONT, RIGHT, FRONT, LEFT], start=0.1))
    assert step.verdict == WRONG and step.rival == "turn_right"
    # Asked to blink, the clip turns (either way) before blinking.
    turn_then_blink = judge("blink", 0.0, _frames([RIGHT, FRONT, LEFT, LEFT, LEFT],
                                                  [OPEN, OPEN, OPEN, SHUT, OPEN], 0.1))
    assert turn_then_blink.verdict == WRONG and turn_then_blink.rival == "turn_left"


def test_what_a_live_doctor_does_between_actions_is_not_a_rival() -> None:
    # Back to facing the camera after the previous step's left turn, then the blink asked.
    back = judge("blink", 0.0, _frames([LEFT, 0.1, FRONT, FRONT, FRONT],
                                       [OPEN, OPEN, OPEN, SHUT, OPEN], 0.1))
    assert back.verdict == DONE
    # A blink of their own during a turn step is not a rival (people blink by themselves).
    own_blink = judge("turn_right", 0.0, _frames([LEFT, LEFT, FRONT, FRONT, RIGHT],
                                                 [OPEN, SHUT, OPEN, OPEN, OPEN], 0.1))
    assert own_blink.verdict == DONE
    # A swapped photo (one jump to the other side) is neither the action nor a rival.
    swapped = judge("turn_left", 0.0, _frames([LEFT, LEFT, RIGHT, RIGHT], start=0.1))
    assert swapped.verdict is None
    assert not rival_turn("right", [LEFT, FRONT])  # ends facing the camera: a way back


def test_a_random_sequence_never_repeats_an_action_in_a_row() -> None:
    rng = random.Random(14)
    for _ in range(200):
        steps = challenge_sequence(CHALLENGES, rng.randint(2, 3), rng)
        assert 2 <= len(steps) <= 3 and set(steps) <= set(CHALLENGES)
        assert all(a != b for a, b in itertools.pairwise(steps))
    seen = {challenge_sequence(CHALLENGES, 3, rng) for _ in range(300)}
    assert len(seen) == 12  # 3 × 2 × 2: every sequence can come up


def test_config_pins_or_refuses_a_sequence() -> None:
    assert IdentityConfig(challenge="turn_left,blink").checked().pinned() == ("turn_left", "blink")
    assert IdentityConfig().checked().pinned() == ()
    for bad in ("turn_left,turn_left", "nod", "blink,", ""):
        with pytest.raises(ValueError):
            IdentityConfig(challenge=bad).checked()
    with pytest.raises(ValueError):
        IdentityConfig(challenge_steps=(3, 2)).checked()


# -- fusion (identity/doctor/fusion.py) ------------------------------------------------------------


def test_one_outlier_frame_neither_passes_nor_fails() -> None:
    assert fused_distance([0.2, 0.25, 0.9, 0.22, 0.3]) == pytest.approx(0.22)  # one blurred
    assert fused_distance([0.7, 0.68, 0.3, 0.72, 0.75]) == pytest.approx(0.68)  # one lucky
    assert fused_verdict([0.2, 0.25, 0.9, 0.22, 0.3], THRESHOLD) is True
    assert fused_verdict([0.7, 0.68, 0.3, 0.72, 0.75], THRESHOLD) is False


def test_the_fused_verdict_stops_only_when_the_rest_cannot_change_it() -> None:
    assert fused_verdict([0.2], THRESHOLD, still_to_come=4) is None  # one frame never decides
    assert fused_verdict([0.2, 0.9], THRESHOLD, still_to_come=3) is None
    assert fused_verdict([0.2, 0.3], THRESHOLD, still_to_come=3) is True  # the 2nd best is 0.3
    assert fused_verdict([0.7, 0.8, 0.75], THRESHOLD, still_to_come=2) is None  # 2 could be 0
    assert fused_verdict([0.7, 0.8, 0.75, 0.9], THRESHOLD, still_to_come=1) is False
    assert fused_verdict([0.2, 0.3], THRESHOLD, still_to_come=1) is True  # a re-check's two
    assert fused_verdict([0.2, 0.7], THRESHOLD, still_to_come=1) is None  # they disagree
    # Exhaustively: stopping early never gives another answer than seeing every frame.
    rng = random.Random(2)
    for _ in range(500):
        n = rng.randint(1, 5)
        ds = [rng.choice([0.1, 0.3, 0.45, 0.55, 0.7, 1.0]) for _ in range(n)]
        final = fused_distance(ds) <= THRESHOLD
        for k in range(1, n + 1):
            verdict = fused_verdict(ds[:k], THRESHOLD, n - k)
            assert verdict is None or verdict == final, (ds, k)


def test_frame_problems_are_guidance_not_evidence() -> None:
    """A dark or small face is left out of the decision; dark frames say so, measured."""
    front = head_and_shoulders(OBAMA).resize((640, 480))
    dark = np.asarray(ImageEnhance.Brightness(front).enhance(0.15))
    result = worker.analyse(dark)
    assert frame_problem(result, 80, IdentityConfig().dark_luma) == "too_dark", result.luma
    lit = worker.analyse(np.asarray(front))
    assert lit.luma > 60 and frame_problem(lit, 80, IdentityConfig().dark_luma) is None
    small = Image.new("RGB", (640, 480), (214, 220, 222))
    small.paste(front.resize((256, 192)))
    far = worker.analyse(np.asarray(small))
    assert far.faces == 1 and frame_problem(far, 80, 30.0) == "face_too_small", far.face_px
    assert frame_problem(worker.analyse(np.asarray(empty_scene((640, 480)))), 80, 30) == "no_face"
