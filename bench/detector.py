"""Face detector benchmark (issue 14, item 3): dlib's HOG as the face workers ran it against
BlazeFace (identity/faces/blazeface.py), on the real photos of ../shared/faces.

    python -m bench.detector [--runs 200] [--out result.json]

Detectors, all on one thread: `hog` (worker.detect_hog: a 320-wide copy, upsample 1);
`blazeface_short` and `blazeface_full` (each model alone, MediaPipe's 0.5 score);
`blazeface_look_<c>` (the full-range model, faces scoring c–0.5 kept when HOG confirms them on a
close crop: worker.hog_verifies). `blazeface_look_0.15` is what TC_FACE_DETECTOR=blazeface runs;
the other c make CANDIDATE's curve. Every frame is 640x480, as the node decodes the video.
Reported (JSON):
- recall_by_face_px: each photo (calibration/ 30 adults, adult_a/b, obama/, biden/, child_a/b,
  and their mirror images) scaled so its face is 20 ... 120 px wide (never enlarged) and pasted
  with the face at the frame's centre; a hit is a box whose centre is inside the true face and
  whose width is 0.5–2x of it; `extra`: other boxes counted as people (worker.keep_people); the true
  face: HOG (upsample 1) on the photo at ≤ 800 px;
- guardian_child: adult photos beside both child photos (bench.faces.side_by_side, as the
  presence tests build them), the pair at full size and shrunk to 1/2 and 1/3 in the middle of a
  wall (the family further from the camera): how often both faces are found, and how many people
  `keep_people` counts (2 is right);
- empty_false_faces: faces found on an empty wall and on a photo's faceless edge;
- cpu_ms_per_frame: process_time per 640x480 guardian-with-child frame, median and p90 over
  --runs; cpu_ms_per_frame_unsure_face: a frame with a face BlazeFace is unsure of (one look);
- closer_looks_in_recall_frames: how many HOG looks each `look` variant took over recall frames;
- box_map: where HOG boxes a face relative to each model's box (centre shift and size ratio, in
  its box widths), medians over the photos both find: blazeface.MODELS' `to_dlib`;
- encoding: dlib's 128-d encodings of the calibration photos (640x480 frames), from HOG's box
  and from BlazeFace's mapped box: their distance on the same frame; same- and different-person
  distances both ways, and enrolled-from-HOG against live-from-BlazeFace (enroll keeps HOG);
  the 68 landmarks' mean shift as a share of the eye distance (the liveness challenge reads them);
- ratio_over_hog: BlazeFace ÷ HOG for CPU, recall per size, guardian-with-child, this run.
One JSON document goes to stdout (and --out), progress to stderr. About 2.5 minutes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from bench.faces import FACES, empty_scene, load_photo, side_by_side
from identity.faces import worker
from identity.faces.blazeface import CANDIDATE, MIN_SCORE, MODELS, BlazeFace, Net, to_dlib

log = logging.getLogger("bench.detector")

FRAME = (640, 480)
SIZES = (20, 30, 40, 50, 64, 80, 120)
SHRINK = (1.0, 0.5, 1 / 3)
CANDIDATES = tuple(sorted({0.35, 0.25, CANDIDATE, 0.05}, reverse=True))
IN_USE = f"blazeface_look_{CANDIDATE:.2f}"  # what TC_FACE_DETECTOR=blazeface runs
WALL = (214, 220, 222)

Box = tuple[int, int, int, int]  # top, right, bottom, left
Detector = Callable[[np.ndarray], list[Box]]


def photos() -> dict[str, list[Path]]:
    """Single-face photos by kind; two_people/ is left out (two faces)."""
    calib = sorted((FACES / "calibration").glob("*.jpg"))
    adults = [*calib, FACES / "adult_a/man1.jpg", FACES / "adult_b/woman1.jpg",
              *sorted((FACES / "obama").glob("*.jpg")), *sorted((FACES / "biden").glob("*.jpg"))]
    return {"adult": adults, "child": [FACES / "child_a/kid1.jpg", FACES / "child_b/girl1.jpg"]}


def identity_of(path: Path) -> str:
    return path.name.split("_")[0] if path.parent.name == "calibration" else path.parent.name


def true_face(img: Image.Image) -> Box | None:
    """The photo's face by HOG with upsampling on a ≤ 800 px copy (its faces are large)."""
    scale = min(1.0, 800 / max(img.size))
    small = np.asarray(img.resize((round(img.width * scale), round(img.height * scale))))
    found = worker.face_lib().face_locations(small, number_of_times_to_upsample=1)
    if not found:
        return None
    t, r, b, left = max(found, key=lambda f: (f[1] - f[3]) * (f[2] - f[0]))
    return (round(t / scale), round(r / scale), round(b / scale), round(left / scale))


def placed(img: Image.Image, face: Box, width: int) -> tuple[np.ndarray, Box]:
    """The photo scaled so the face is `width` px wide, the face at the frame's centre."""
    t, r, b, left = face
    s = width / (r - left)
    scaled = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))),
                        Image.Resampling.LANCZOS)
    cx, cy = (left + r) / 2 * s, (t + b) / 2 * s
    ox, oy = round(FRAME[0] / 2 - cx), round(FRAME[1] / 2 - cy)
    canvas = Image.new("RGB", FRAME, WALL)
    canvas.paste(scaled, (ox, oy))
    return np.asarray(canvas), (round(t * s) + oy, round(r * s) + ox, round(b * s) + oy,
                                round(left * s) + ox)


def hit(found: Box, truth: Box) -> bool:
    t, r, b, left = truth
    cx, cy = (found[1] + found[3]) / 2, (found[0] + found[2]) / 2
    ratio = (found[1] - found[3]) / max(1, r - left)
    return left <= cx <= r and t <= cy <= b and 0.5 <= ratio <= 2.0


def by_area(boxes: list[Box]) -> list[Box]:
    return sorted(boxes, key=lambda b: (b[1] - b[3]) * (b[2] - b[0]), reverse=True)


LOOKS: dict[str, BlazeFace] = {}


def detectors() -> dict[str, Detector]:
    """HOG as the workers run it; each BlazeFace model alone; the full-range model with the
    closer look (the workers' BlazeFace) from candidates of several scores (CANDIDATE's curve)."""
    short = Net("short", threads=1)
    out: dict[str, Detector] = {
        "hog": worker.detect_hog,
        "blazeface_short": lambda rgb: by_area([to_dlib(b, rgb.shape[1], rgb.shape[0],
                                                        MODELS["short"])
                                                for _, b in short.raw(rgb)]),
        "blazeface_full": _cascade(BlazeFace(threads=1, candidate=MIN_SCORE)),
    }
    for candidate in CANDIDATES:
        name = f"blazeface_look_{candidate:.2f}"
        LOOKS[name] = BlazeFace(threads=1, candidate=candidate, verify=worker.hog_verifies)
        out[name] = _cascade(LOOKS[name])
    return out


def _cascade(det: BlazeFace) -> Detector:
    return lambda rgb: by_area(det(rgb))


def recall_by_size(dets: dict[str, Detector], faces: dict[str, list[tuple[Image.Image, Box]]]
                   ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in SIZES:
        row: dict[str, Any] = {}
        for kind, items in faces.items():
            usable = [(img, box) for img, box in items if box[1] - box[3] >= size]  # no upscaling
            counts = {name: {"hit": 0, "extra": 0} for name in dets}
            for img, box in usable:
                rgb, truth = placed(img, box, size)
                for name, det in dets.items():
                    people = worker.keep_people(det(rgb))
                    found = [b for b in people if hit(b, truth)]
                    counts[name]["hit"] += bool(found)
                    counts[name]["extra"] += len(people) - min(1, len(found))
            row[kind] = {"n": len(usable), **{
                name: {"recall": round(c["hit"] / max(1, len(usable)), 3), "extra": c["extra"]}
                for name, c in counts.items()}}
        out[str(size)] = row
        log.info("size %d: %s", size,
                 {k: {n: v[n]["recall"] for n in dets} for k, v in row.items()})
    return out


def guardian_child(dets: dict[str, Detector], adults: list[Path], children: list[Path]
                   ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pairs = [side_by_side(a, c).resize(FRAME, Image.Resampling.LANCZOS)
             for a, c in itertools.product(adults, children)]
    for shrink in SHRINK:
        stats = {name: {"both_found": 0, "people_2": 0, "child_found": 0, "adult_found": 0,
                        "people_counted": {}} for name in dets}
        for pair in pairs:
            small = pair.resize((round(FRAME[0] * shrink), round(FRAME[1] * shrink)),
                                Image.Resampling.LANCZOS)
            canvas = Image.new("RGB", FRAME, WALL)
            ox, oy = (FRAME[0] - small.width) // 2, (FRAME[1] - small.height) // 2
            canvas.paste(small, (ox, oy))
            rgb = np.asarray(canvas)
            mid = FRAME[0] / 2
            for name, det in dets.items():
                raw = det(rgb)
                people = worker.keep_people(raw)
                adult = any((b[1] + b[3]) / 2 < mid for b in raw)
                child = any((b[1] + b[3]) / 2 >= mid for b in raw)
                s = stats[name]
                s["adult_found"] += adult
                s["child_found"] += child
                s["both_found"] += adult and child
                s["people_2"] += len(people) == 2
                key = str(len(people))
                s["people_counted"][key] = s["people_counted"].get(key, 0) + 1
        face_px = round(FRAME[1] * 0.28 * shrink)  # side_by_side's face share of the height
        out[f"shrink_{shrink:.2f}"] = {"frames": len(pairs), "face_height_px_about": face_px,
                                       **{n: {k: (round(v / len(pairs), 3)
                                                  if isinstance(v, int) else v)
                                              for k, v in s.items()} for n, s in stats.items()}}
        log.info("guardian+child x%.2f: %s", shrink,
                 {n: s["both_found"] for n, s in stats.items()})
    return out


def empty(dets: dict[str, Detector]) -> dict[str, Any]:
    frames = [np.asarray(empty_scene(FRAME))]
    frames += [np.asarray(ImageOps.pad(load_photo(FACES / "obama/obama-480p.jpg").crop(
        (0, 0, 150, 480)), FRAME, color=WALL))]  # a photo's edge with no face in it
    return {name: sum(len(det(f)) for f in frames) for name, det in dets.items()}


def cpu_ms(dets: dict[str, Detector], rgb: np.ndarray, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, det in dets.items():
        for _ in range(5):
            det(rgb)
        times = []
        for _ in range(runs):
            started = time.process_time()
            det(rgb)
            times.append((time.process_time() - started) * 1000)
        times.sort()
        out[name] = {"median": round(statistics.median(times), 2),
                     "p90": round(times[int(0.9 * (len(times) - 1))], 2), "runs": runs}
        log.info("cpu %s: %s", name, out[name])
    return out


def frames_640(paths: list[Path]) -> list[tuple[str, np.ndarray]]:
    """Each photo as the node would see it from a webcam: fitted into 640x480."""
    return [(identity_of(p), np.asarray(ImageOps.pad(load_photo(p), FRAME, color=WALL)))
            for p in paths]


def box_map(net: Net, frames: list[tuple[str, np.ndarray]]) -> dict[str, Any]:
    """HOG's box relative to a BlazeFace model's raw box for the same face (in its widths)."""
    dx, dy, scale = [], [], []
    for _, rgb in frames:
        hog = worker.detect_hog(rgb)
        raw = net.raw(rgb)
        if not hog or not raw:
            continue
        t, r, b, left = hog[0]
        xmin, ymin, xmax, ymax = max(raw, key=lambda f: (f[1][2] - f[1][0]))[1]
        w = xmax - xmin
        dx.append(float(((left + r) / 2 - (xmin + xmax) / 2) / w))
        dy.append(float(((t + b) / 2 - (ymin + ymax) / 2) / w))
        scale.append(float((r - left) / w))
    return {"n": len(dx), "dx": round(statistics.median(dx), 3),
            "dy": round(statistics.median(dy), 3), "scale": round(statistics.median(scale), 3),
            "scale_spread": [round(min(scale), 3), round(max(scale), 3)]}


def encodings(det: BlazeFace, frames: list[tuple[str, np.ndarray]]) -> dict[str, Any]:
    fr = worker.face_lib()
    rows = []
    landmark_shift = []
    for who, rgb in frames:
        hog = worker.detect_hog(rgb)
        bf = by_area(det(rgb))
        if not hog or not bf:
            continue
        e_hog = fr.face_encodings(rgb, [hog[0]])[0]
        e_bf = fr.face_encodings(rgb, [bf[0]])[0]
        rows.append((who, e_hog, e_bf))
        m_hog = fr.face_landmarks(rgb, [hog[0]], model="large")[0]
        m_bf = fr.face_landmarks(rgb, [bf[0]], model="large")[0]
        a = np.asarray([p for k in sorted(m_hog) for p in m_hog[k]], dtype=float)
        b = np.asarray([p for k in sorted(m_bf) for p in m_bf[k]], dtype=float)
        eyes = np.linalg.norm(np.mean(m_hog["left_eye"], axis=0) - np.mean(m_hog["right_eye"],
                                                                          axis=0))
        landmark_shift.append(float(np.mean(np.linalg.norm(a - b, axis=1)) / eyes))
    self_dist = [float(np.linalg.norm(h - b)) for _, h, b in rows]
    pairs: dict[str, dict[str, list[float]]] = {"same": {}, "different": {}}
    for (w1, h1, b1), (w2, h2, b2) in itertools.combinations(rows, 2):
        kind = "same" if w1 == w2 else "different"
        for name, d in (("hog_hog", np.linalg.norm(h1 - h2)),
                        ("bf_bf", np.linalg.norm(b1 - b2)),
                        # enrolled from a HOG box (enroll keeps HOG), seen live by BlazeFace
                        ("hog_enrolled_bf_live", min(np.linalg.norm(h1 - b2),
                                                     np.linalg.norm(b1 - h2)))):
            pairs[kind].setdefault(name, []).append(float(d))

    def summary(values: list[float]) -> dict[str, float]:
        return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
                "max": round(max(values), 3)}

    same_shift = [b - h for b, h in zip(pairs["same"]["bf_bf"], pairs["same"]["hog_hog"],
                                        strict=True)]
    return {
        "frames": len(rows),
        "same_frame_hog_vs_bf": summary(self_dist),
        "same_person": {k: summary(v) | {"n": len(v)} for k, v in pairs["same"].items()},
        "different_person": {k: summary(v) | {"n": len(v)} for k, v in pairs["different"].items()},
        "same_person_shift_bf_minus_hog": summary(same_shift)
        | {"mean": round(statistics.mean(same_shift), 4)},
        "landmarks_68_mean_shift_eye_share": summary(landmark_shift),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    worker.initialise()
    dets = detectors()
    by_kind = photos()
    faces: dict[str, list[tuple[Image.Image, Box]]] = {}
    for kind, paths in by_kind.items():
        faces[kind] = []
        for p in paths:
            img = load_photo(p)
            for im in (img, ImageOps.mirror(img)):
                box = true_face(im)
                if box is not None:
                    faces[kind].append((im, box))
    result: dict[str, Any] = {"bench": "detector", "frame": list(FRAME),
                              "photos": {k: len(v) for k, v in faces.items()}}
    result["recall_by_face_px"] = recall_by_size(dets, faces)
    result["closer_looks_in_recall_frames"] = {n: d.looks for n, d in LOOKS.items()}
    result["guardian_child"] = guardian_child(dets, [*by_kind["adult"][30:],
                                                     *by_kind["adult"][:30:3]], by_kind["child"])
    result["empty_false_faces"] = empty(dets)
    probe = np.asarray(side_by_side(FACES / "obama/obama2.jpg", FACES / "child_a/kid1.jpg")
                       .resize(FRAME, Image.Resampling.LANCZOS))
    result["cpu_ms_per_frame"] = cpu_ms(dets, probe, args.runs)
    # A frame with a face BlazeFace is unsure of (child_b at half size, ~0.4): one closer look.
    unsure = Image.new("RGB", FRAME, WALL)
    unsure.paste(side_by_side(FACES / "obama/obama2.jpg", FACES / "child_b/girl1.jpg")
                 .resize((FRAME[0] // 2, FRAME[1] // 2), Image.Resampling.LANCZOS),
                 (FRAME[0] // 4, FRAME[1] // 4))
    result["cpu_ms_per_frame_unsure_face"] = cpu_ms(dets, np.asarray(unsure), args.runs // 2)
    calib = frames_640(sorted((FACES / "calibration").glob("*.jpg")))
    mapped = calib + frames_640(by_kind["adult"][30:] + by_kind["child"])
    result["box_map"] = {name: box_map(Net(name), mapped) | {"in_use": MODELS[name].to_dlib}
                         for name in MODELS}
    result["encoding"] = encodings(BlazeFace(threads=1), calib)
    result["ratio_over_hog"] = {name: ratios(result, name)
                                for name in ("blazeface_full", "blazeface_short", IN_USE)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def ratios(result: dict[str, Any], name: str) -> dict[str, Any]:
    cpu = result["cpu_ms_per_frame"]
    small = result["cpu_ms_per_frame_unsure_face"]
    out: dict[str, Any] = {
        "cpu_median": round(cpu[name]["median"] / cpu["hog"]["median"], 3),
        "cpu_median_unsure_face": round(small[name]["median"] / small["hog"]["median"], 3)}
    for size, row in result["recall_by_face_px"].items():
        for kind, v in row.items():
            if v["n"]:
                out[f"recall_{kind}_{size}px"] = f"{v[name]['recall']} vs {v['hog']['recall']}"
    for key, row in result["guardian_child"].items():
        both = (row[name]["both_found"], row["hog"]["both_found"])
        out[f"guardian_child_both_{key}"] = f"{both[0]} vs {both[1]}"
    return out


if __name__ == "__main__":
    raise SystemExit(main())
