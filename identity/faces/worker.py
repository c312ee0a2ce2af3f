"""What runs inside the face worker processes (dlib holds the GIL, so never in the node's own).

Each worker imports face_recognition (and, with TC_FACE_DETECTOR=blazeface, loads BlazeFace) once
(initialise) and then answers small requests: find the faces in a frame (HOG on a 320-wide copy:
59 ms instead of 185 ms at 640x480; or BlazeFace, identity/faces/blazeface.py), and only when asked,
the 128-d encoding (156 ms, computed on the full-size crop for accuracy) and the 68 landmarks
(3.5 ms) of the largest face. Results are plain picklable dataclasses; errors in an enrollment
photo are returned as a code, not raised, so the parent can answer 422 with a clear message.
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.config.identity import DEFAULT_DETECTOR, DETECTORS
from core.config.photos import PhotoLimits
from core.logs import LogSettings

from . import image_check

DEFAULT_LIMITS = PhotoLimits()

DETECT_WIDTH = 320
# Detectors return small false "faces" (hair, badges): a face narrower than this share of the
# largest one is not counted as a person.
PERSON_SHARE = 0.4
THUMB_PX = 160


_fr: Any = None
DETECTOR = DEFAULT_DETECTOR  # what this process finds faces with (initialise sets it)
_blaze: Any = None

Box = tuple[int, int, int, int]  # top, right, bottom, left (face_recognition's order)


def start(logs: LogSettings | None = None, detector: str = DEFAULT_DETECTOR) -> None:
    """A worker process's initialiser: log as the node does, then load the models."""
    if logs is not None:
        logs.configure()
    initialise(detector)


def initialise(detector: str = DEFAULT_DETECTOR) -> None:
    """Import face_recognition (and load BlazeFace if it is the detector) and run them once, so
    the first real request is not the slow one. Again with the same detector: nothing to do."""
    global _fr, DETECTOR
    if detector not in DETECTORS:
        raise ValueError(f"face detector {detector!r}: one of {DETECTORS}")
    if _fr is None:
        with warnings.catch_warnings():  # face_recognition_models imports deprecated pkg_resources
            warnings.simplefilter("ignore")
            import face_recognition
        _fr = face_recognition
        _fr.face_locations(np.zeros((48, 64, 3), dtype=np.uint8))
    if detector == "blazeface" and _blaze is None:
        _blazeface()(np.zeros((48, 64, 3), dtype=np.uint8))
    DETECTOR = detector


def face_lib() -> Any:
    """face_recognition, imported (and run once) on first use; also for presence_worker."""
    if _fr is None:
        initialise()
    return _fr


@dataclass
class FrameResult:
    """One frame: how many people, and for the largest face what was asked for."""

    faces: int
    box: Box | None = None
    face_px: int = 0
    distance: float | None = None
    encoding: list[float] | None = None
    landmarks: dict[str, list[tuple[float, float]]] | None = None
    thumbnail: bytes | None = None
    cpu_s: float = 0.0
    boxes: list[Box] = field(default_factory=list)
    luma: float = 0.0  # mean Rec. 601 luma (0-255) of the largest face, or of the frame


def _luma(rgb: np.ndarray, box: Box | None) -> float:
    """How lit the face is (the whole frame when there is none): a camera in a dark room is
    guidance for the doctor, not evidence against them. Every 4th pixel: ~0.1 ms."""
    if box is not None:
        top, right, bottom, left = box
        rgb = rgb[max(0, top):bottom, max(0, left):right]
    sample = rgb[::4, ::4].reshape(-1, 3)
    if not len(sample):
        return 0.0
    return float((sample @ np.array([0.299, 0.587, 0.114])).mean())


def detect_faces(rgb: np.ndarray) -> list[Box]:
    """The faces in a frame with the worker's detector, largest first."""
    face_lib()
    return detect_blazeface(rgb) if DETECTOR == "blazeface" else detect_hog(rgb)


def _blazeface() -> Any:
    """The worker's BlazeFace, loaded once: one LiteRT thread (the pool is the parallelism)."""
    global _blaze
    if _blaze is None:
        from .blazeface import BlazeFace

        _blaze = BlazeFace(threads=1, verify=hog_verifies)
    return _blaze


def detect_blazeface(rgb: np.ndarray) -> list[Box]:
    """BlazeFace on the whole frame (it scales to its own input), dlib-like boxes, largest first;
    faces it is unsure of confirmed by HOG on a close crop (hog_verifies)."""
    boxes = _blazeface()(rgb)
    boxes.sort(key=lambda b: (b[1] - b[3]) * (b[2] - b[0]), reverse=True)
    return boxes


VERIFY_FACE_PX = 100  # HOG finds faces from ~80 px without upsampling: some margin


def hog_verifies(crop: np.ndarray, box: np.ndarray) -> bool:
    """BlazeFace's closer look: HOG on the crop scaled so the face is VERIFY_FACE_PX wide finds a
    face of about the same size (0.5–2x) whose centre is inside `box` ([xmin, ymin, xmax, ymax]
    in the crop); not a smaller face inside a large loose box."""
    from PIL import Image

    scale = VERIFY_FACE_PX / max(1.0, float(box[2] - box[0]))
    h, w = crop.shape[:2]
    img = Image.fromarray(crop).resize((max(1, round(w * scale)), max(1, round(h * scale))))
    for t, r, b, left in face_lib().face_locations(np.asarray(img), number_of_times_to_upsample=0):
        cx, cy = (left + r) / 2 / scale, (t + b) / 2 / scale
        ratio = (r - left) / VERIFY_FACE_PX
        if box[0] <= cx <= box[2] and box[1] <= cy <= box[3] and 0.5 <= ratio <= 2.0:
            return True
    return False


def detect_hog(rgb: np.ndarray) -> list[Box]:
    """HOG on a copy DETECT_WIDTH wide, boxes scaled back to `rgb`, largest first."""
    fr = face_lib()
    h, w = rgb.shape[:2]
    scale = min(1.0, DETECT_WIDTH / w)
    if scale < 1.0:
        from PIL import Image

        small = np.asarray(Image.fromarray(rgb).resize((round(w * scale), round(h * scale))))
    else:
        small = rgb
    found = fr.face_locations(small, number_of_times_to_upsample=1)
    boxes = [(round(t / scale), min(w, round(r / scale)), min(h, round(b / scale)),
              max(0, round(left / scale))) for t, r, b, left in found]
    boxes.sort(key=lambda b: (b[1] - b[3]) * (b[2] - b[0]), reverse=True)
    return boxes


def keep_people(boxes: list[Box]) -> list[Box]:
    """The boxes (largest first) wide enough to be a person, not a badge or hair."""
    if not boxes:
        return []
    widest = boxes[0][1] - boxes[0][3]
    return [b for b in boxes if (b[1] - b[3]) >= PERSON_SHARE * widest]


def _thumbnail(rgb: np.ndarray, box: Box) -> bytes:
    from PIL import Image

    top, right, bottom, left = box
    pad = (bottom - top) // 2
    h, w = rgb.shape[:2]
    crop = rgb[max(0, top - pad):min(h, bottom + pad), max(0, left - pad):min(w, right + pad)]
    img = Image.fromarray(crop)
    img.thumbnail((THUMB_PX, THUMB_PX))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


def analyse(rgb: np.ndarray, known: list[float] | None = None, encode: bool = False,
            landmarks: bool = False, thumbnail: bool = False) -> FrameResult:
    """Count the people in a frame; for the largest face add what is asked (and only that)."""
    started = time.process_time()
    fr = face_lib()
    people = keep_people(detect_faces(rgb))
    result = FrameResult(faces=len(people), boxes=people)
    result.luma = _luma(rgb, people[0] if people else None)
    if people:
        box = people[0]
        result.box = box
        result.face_px = box[1] - box[3]
        if encode or known is not None:
            enc = fr.face_encodings(rgb, [box])[0]
            result.encoding = [float(x) for x in enc]
            if known is not None:
                result.distance = float(np.linalg.norm(enc - np.asarray(known)))
        if landmarks:
            marks = fr.face_landmarks(rgb, [box], model="large")[0]
            result.landmarks = {k: [(float(x), float(y)) for x, y in v]
                                for k, v in marks.items()}
        if thumbnail:
            result.thumbnail = _thumbnail(rgb, box)
    result.cpu_s = time.process_time() - started
    return result


@dataclass
class EnrollResult:
    """An enrollment photo's outcome: an encoding, or an error code and message."""

    encoding: list[float] | None = None
    error: str | None = None
    message: str = ""
    faces: int = 0
    face_px: int = 0
    width: int = 0
    height: int = 0


def enroll(data: bytes, min_face_px: int, limits: PhotoLimits = DEFAULT_LIMITS) -> EnrollResult:
    """Check a reference photo: readable JPEG/PNG, whole, within `limits`, exactly one face, big
    enough; encode it. The size is checked from the header, before anything is decoded."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ("JPEG", "PNG"):
                return EnrollResult(error="unsupported_format",
                                    message=f"a JPEG or PNG photo is needed, not {img.format}")
            refused = image_check.refusal(img.width, img.height, limits)
            if refused is not None:
                return EnrollResult(error=refused.code, message=refused.message,
                                    width=img.width, height=img.height)
            try:
                _load_whole(img)
                rgb_img = ImageOps.exif_transpose(img).convert("RGB")
            except (OSError, ValueError, SyntaxError) as exc:
                return EnrollResult(error="bad_image", width=img.width, height=img.height,
                                    message=f"the photo is damaged or cut short: {exc}")
    except Image.DecompressionBombError as exc:  # past 2x Pillow's limit: refused at the header
        return EnrollResult(error="image_too_large", message=f"the photo is too large: {exc}")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return EnrollResult(error="unreadable_image", message=f"the photo cannot be read: {exc}")
    # Detect on a copy at most 800 px wide: the photo's faces are large, and HOG cost grows
    # with the area.
    scale = min(1.0, 800 / max(rgb_img.size))
    small = rgb_img.resize((max(1, round(rgb_img.width * scale)),
                            max(1, round(rgb_img.height * scale))))
    found = face_lib().face_locations(np.asarray(small), number_of_times_to_upsample=1)
    boxes = sorted(((round(t / scale), round(r / scale), round(b / scale), round(le / scale))
                    for t, r, b, le in found),
                   key=lambda b: (b[1] - b[3]) * (b[2] - b[0]), reverse=True)
    people = keep_people(boxes)
    result = EnrollResult(faces=len(people), width=rgb_img.width, height=rgb_img.height)
    if not people:
        result.error, result.message = "no_face", "no face was found in the photo"
        return result
    if len(people) > 1:
        result.error = "several_faces"
        result.message = f"{len(people)} faces were found; the photo must show only the doctor"
        return result
    box = people[0]
    result.face_px = box[1] - box[3]
    if result.face_px < min_face_px:
        result.error = "face_too_small"
        result.message = (f"the face is {result.face_px} px wide; at least {min_face_px} px "
                          "is needed (a closer or larger photo)")
        return result
    rgb = np.asarray(rgb_img)
    result.encoding = [float(x) for x in face_lib().face_encodings(rgb, [box])[0]]
    return result


def _load_whole(img: Any) -> None:
    """Decode all of `img`, or raise: face_recognition turns Pillow's LOAD_TRUNCATED_IMAGES on at
    import, which would pad a photo cut short with grey and enroll it (issue 17)."""
    from PIL import ImageFile

    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
