"""Photos and cameras for tests and benchmarks: the REAL photos in ../shared/faces (never
generated faces), scenes made of them, and camera clips (.y4m) for Chromium's fake capture.

A clip is a sequence of segments, each one still image with a slow pan/zoom so that every frame
differs (the remote side must see frames advancing, and a frozen picture is what a broken relay
looks like):

    make_y4m(path, FACES / "obama/obama.jpg", seconds=10)
    make_y4m(path, [Segment(side_by_side(ADULT, CHILD), 6), Segment(CHILD, 6)])  # guardian leaves
    make_y4m(path, [Segment(ADULT, 4), Segment(empty_scene(), 4)])              # nobody on camera

Chromium loops the file, so a clip of segments A, B plays A, B, A, B ... .
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps


def _faces_dir() -> Path:
    """TC_FACES_DIR, else ../shared/faces beside the repository (as CI lays it out)."""
    if os.environ.get("TC_FACES_DIR"):
        return Path(os.environ["TC_FACES_DIR"])
    return Path(__file__).resolve().parents[2] / "shared" / "faces"


FACES = _faces_dir()

# Photos by identity (see /work/shared/faces/MANIFEST.tsv).
OBAMA = FACES / "obama" / "obama.jpg"
OBAMA_2 = FACES / "obama" / "obama2.jpg"
BIDEN = FACES / "biden" / "biden2.jpg"
TWO_PEOPLE = FACES / "two_people" / "two_people.jpg"
ADULT_A = FACES / "adult_a" / "man1.jpg"
ADULT_B = FACES / "adult_b" / "woman1.jpg"
CHILD_A = FACES / "child_a" / "kid1.jpg"
CHILD_B = FACES / "child_b" / "girl1.jpg"

# A neutral room-wall colour for padding and for an empty scene.
_WALL = (214, 220, 222)

ImageSource = Image.Image | str | os.PathLike


# --------------------------------------------------------------------------------------------
# Camera clips (.y4m)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One still shown for `seconds` with its own slow pan/zoom."""

    source: ImageSource
    seconds: float


def load_photo(source: ImageSource) -> Image.Image:
    """A photo path or an image, as RGB with its EXIF rotation applied."""
    if isinstance(source, Image.Image):
        return source.convert("RGB")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"photo not found: {path} (see {FACES}/MANIFEST.tsv)")
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def _contain(img: Image.Image, size: tuple[int, int], fill=_WALL) -> Image.Image:
    """Fit the whole photo into `size` (no face is cropped away), padding with a wall colour."""
    canvas = Image.new("RGB", size, fill)
    fitted = ImageOps.contain(img, size, Image.Resampling.LANCZOS)
    canvas.paste(fitted, ((size[0] - fitted.width) // 2, (size[1] - fitted.height) // 2))
    return canvas


def face_box(img: Image.Image) -> tuple[int, int, int, int] | None:
    """The largest face in the photo as (left, top, right, bottom), or None.

    Only to FRAME a shot (where to crop); detectors return small false faces, so take the largest.
    """
    import warnings

    with warnings.catch_warnings():  # face_recognition_models imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import face_recognition

    scale = min(1.0, 640 / max(img.size))  # HOG on a small copy: ~0.1 s
    small = img.resize((round(img.width * scale), round(img.height * scale)))
    found = face_recognition.face_locations(np.asarray(small))
    if not found:
        return None
    top, right, bottom, left = max(found, key=lambda b: (b[1] - b[3]) * (b[2] - b[0]))
    return (round(left / scale), round(top / scale), round(right / scale), round(bottom / scale))


def head_and_shoulders(
    source: ImageSource, aspect: float = 4 / 3, face_share: float = 0.3
) -> Image.Image:
    """Crop a photo to `aspect` around its largest face, the face `face_share` of the height.

    What a webcam in front of the person would see; the whole photo if no face is found.
    """
    img = load_photo(source)
    box = face_box(img)
    if box is None:
        return img
    left, top, right, bottom = box
    h = min(img.height, (bottom - top) / face_share)
    w = min(img.width, h * aspect)
    h = min(h, w / aspect)
    cx, cy = (left + right) / 2, top + (bottom - top) * 0.6  # the face a little above the middle
    x0 = min(max(0.0, cx - w / 2), img.width - w)
    y0 = min(max(0.0, cy - h / 2), img.height - h)
    return img.crop((round(x0), round(y0), round(x0 + w), round(y0 + h)))


def side_by_side(
    left: ImageSource, right: ImageSource, size: tuple[int, int] = (1280, 960)
) -> Image.Image:
    """Two people next to each other in one frame, e.g. an adult guardian and a child.

    Each photo is cropped head-and-shoulders around its face (a half frame is tall and narrow;
    fitting a whole landscape photo into it would leave faces too small to detect).
    """
    half = (size[0] // 2, size[1])
    canvas = Image.new("RGB", size, _WALL)
    for i, src in enumerate((left, right)):
        shot = head_and_shoulders(src, aspect=half[0] / half[1], face_share=0.28)
        canvas.paste(_contain(shot, half), (i * half[0], 0))
    return canvas


def empty_scene(size: tuple[int, int] = (1280, 960)) -> Image.Image:
    """A plain wall with a soft gradient and fine grain: a camera with nobody in front of it.

    The grain keeps the encoder sending real frames (a flat colour compresses to almost nothing).
    """
    w, h = size
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    base = np.array(_WALL, dtype=np.float32)[None, None, :]
    img = base * (1.05 - 0.15 * y) + np.random.default_rng(7).normal(0, 3, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _segments(
    frames: ImageSource | Sequence[ImageSource | Segment], seconds: float | None
) -> list[Segment]:
    """Normalise make_y4m's `frames` argument into timed segments."""
    if isinstance(frames, Segment | Image.Image | str | os.PathLike):
        frames = [frames]
    items = list(frames)
    if not items:
        raise ValueError("make_y4m needs at least one photo or segment")
    untimed = [i for i in items if not isinstance(i, Segment)]
    if untimed and not seconds:
        raise ValueError(
            "give `seconds` (split evenly among photos) or use Segment(photo, seconds)"
        )
    timed_total = sum(i.seconds for i in items if isinstance(i, Segment))
    share = ((seconds or 0) - timed_total) / len(untimed) if untimed else 0.0
    if untimed and share <= 0:
        raise ValueError(f"`seconds`={seconds} leaves no time for {len(untimed)} untimed photo(s)")
    return [i if isinstance(i, Segment) else Segment(i, share) for i in items]


def _viewport(t: float, canvas: tuple[int, int]) -> tuple[float, float, float, float]:
    """The crop box of the canvas at time t: zoom 1.0..1.10 and a slow drift (a hand-held camera).

    The periods are a few seconds, so consecutive frames differ by a pixel or so: enough for
    every frame to be new, slow enough to keep faces detectable.
    """
    cw, ch = canvas
    zoom = 1.05 - 0.05 * math.cos(2 * math.pi * t / 6.0)
    vw, vh = cw / zoom, ch / zoom
    # Drift within the margin the zoom leaves free.
    mx, my = (cw - vw) / 2, (ch - vh) / 2
    cx = cw / 2 + mx * 0.9 * math.sin(2 * math.pi * t / 7.0)
    cy = ch / 2 + my * 0.9 * math.sin(2 * math.pi * t / 9.0)
    return (cx - vw / 2, cy - vh / 2, cx + vw / 2, cy + vh / 2)


def make_y4m(
    path: Path,
    frames: ImageSource | Sequence[ImageSource | Segment],
    seconds: float | None = None,
    fps: int = 15,
    size: tuple[int, int] = (640, 480),
) -> Path:
    """Write a YUV4MPEG2 clip (4:2:0, BT.601 limited range, as Chromium expects); return its path.

    `frames` is one photo (path or PIL image), a list of them (sharing `seconds` evenly), or a list
    of `Segment(photo, seconds)` (mixed with untimed photos, which share what is left of
    `seconds`). Each segment is the still fitted whole into a canvas of the clip's aspect ratio
    and filmed with a slow pan/zoom. A 10 s 640x480 clip builds in about a second.
    """
    w, h = size
    if w % 2 or h % 2:
        raise ValueError(f"y4m 4:2:0 needs even dimensions, got {size}")
    if fps <= 0:
        raise ValueError("fps must be positive")
    segments = _segments(frames, seconds)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The canvas is larger than the output so the zoomed-in viewport is still sharp.
    canvas_size = (w * 3 // 2, h * 3 // 2)
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "wb", buffering=1 << 20) as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        t_clip = 0.0
        for seg in segments:
            canvas = _contain(load_photo(seg.source), canvas_size)
            n = max(1, round(seg.seconds * fps))
            for i in range(n):
                # Time runs on across segments so the motion has no jump at a cut.
                box = _viewport(t_clip + i / fps, canvas_size)
                rgb = canvas.resize(size, Image.Resampling.BILINEAR, box=box)
                frame = av.VideoFrame.from_ndarray(np.asarray(rgb), format="rgb24")
                # yuv420p's ndarray is the three planes back to back (Y, then U, then V): the
                # exact payload of one y4m frame. swscale does BT.601 limited range by default.
                yuv = frame.reformat(format="yuv420p").to_ndarray()
                out.write(b"FRAME\n")
                out.write(yuv.tobytes())
            t_clip += n / fps
    tmp.replace(path)
    return path


class LiveCamera:
    """A y4m clip the test rewrites while Chromium plays it: a camera that reacts.

    Chromium's fake capture reads each frame from the file as it plays it (its Y4M parser reads
    at the frame's offset, frame by frame, looping), so writing a new picture over every frame,
    in place, switches what the camera shows within a frame or two. For a person who acts when
    asked (the liveness actions): `show(image)` after the page announced the action. The picture
    is still (no pan/zoom), as bench/identity.py's clips.
    """

    def __init__(self, path: Path, first: ImageSource, fps: int = 15, frames: int = 15,
                 size: tuple[int, int] = (640, 480)) -> None:
        self.path, self.size, self.frames = Path(path), size, frames
        yuv = self._yuv(first)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = f"YUV4MPEG2 W{size[0]} H{size[1]} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii")
        self._offsets = [len(header) + i * (6 + len(yuv)) + 6 for i in range(frames)]
        with open(self.path, "wb") as out:
            out.write(header)
            for _ in range(frames):
                out.write(b"FRAME\n" + yuv)

    def _yuv(self, image: ImageSource) -> bytes:
        rgb = _contain(load_photo(image), self.size)
        frame = av.VideoFrame.from_ndarray(np.asarray(rgb), format="rgb24")
        return frame.reformat(format="yuv420p").to_ndarray().tobytes()

    def show(self, image: ImageSource) -> None:
        yuv = self._yuv(image)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for offset in self._offsets:
                os.pwrite(fd, yuv, offset)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Y4mInfo:
    width: int
    height: int
    fps: float
    colorspace: str
    frames: int
    header_bytes: int


def read_y4m_info(path: Path) -> Y4mInfo:
    """Parse a y4m header and count its frames from the file size (checks the size math)."""
    data_size = Path(path).stat().st_size
    with open(path, "rb") as f:
        header = f.readline()
    if not header.startswith(b"YUV4MPEG2 "):
        raise ValueError(f"{path}: not a YUV4MPEG2 file: {header[:40]!r}")
    tags = {t[:1]: t[1:] for t in header.decode("ascii").split()[1:]}
    w, h = int(tags["W"]), int(tags["H"])
    num, den = (int(x) for x in tags["F"].split(":"))
    frame_bytes = len(b"FRAME\n") + w * h + 2 * (w // 2) * (h // 2)
    body = data_size - len(header)
    if body % frame_bytes:
        raise ValueError(f"{path}: {body} bytes of frames is not a multiple of {frame_bytes}")
    return Y4mInfo(w, h, num / den, tags.get("C", "420jpeg"), body // frame_bytes, len(header))
