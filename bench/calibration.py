"""Face threshold calibration (issue 14): every same-person and different-person pair of real
photos through the live path, the distance distributions and false accepts / rejects per
threshold.

    .venv/bin/python -m bench.calibration [--out FILE.json] [--plot bench/calibration.png]
                                          [--jobs 1] [--no-older]

For every photo of ../shared/faces/calibration (and the older adults of ../shared/faces: obama,
biden, adult_a, adult_b; children and two_people are left out) two things are made:
- the enrolled reference: the original file's bytes through `worker.enroll`, as an upload;
- a live clip: the photo framed head and shoulders (as the browser tests film it), 640x480 at
  30 fps with small motion (pan, zoom, a few degrees of rotation) and one frame smeared by a
  15 px horizontal motion blur, encoded as one VP8 stream at 1 Mbit/s (one key frame, as a
  browser sends), decoded with FFmpeg's VP8 decoder as the node does, and sampled every
  `sample_interval_s` (0.15 s, the verifier's): ANALYSED frames, each through `worker.analyse`.
Every enrolled reference is then paired with the live clip of every other photo. Per pair:
- `single`: the first analysed frame's distance (0.15 s into the stream, a sharp frame);
- `frames`: every analysed frame's distance (None: no face found), the blurred one included;
- `fused`: `identity.doctor.fusion.fused_distance` of those frames (what a fused decision sees).
Also: `stills` (enrolled upload against enrolled upload, no video: what the live path adds),
`per_frame` (every analysed frame a decision of its own), `by_frame` (the blurred frame stands
out) and `children_live` (the two children filmed against their closest enrolled adult: guardian
presence uses the same threshold). The worker's own functions are called, so a rerun measures
whatever detector and encoder the worker uses then. One JSON document goes to stdout (and
`--out`), progress to stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from bench.faces import FACES, head_and_shoulders, load_photo
from core.config.identity import IdentityConfig
from identity.doctor.fusion import BEST, fused_distance
from identity.faces import worker

SIZE = (640, 480)
FPS = 30
BITRATE = 1_000_000
ANALYSED = 8
BLURRED = 3  # which analysed frame is smeared (0 is the single-frame reference)
BLUR_PX = 15
WALL = (214, 220, 222)
# The older set: adults only (children are not told apart by dlib's model; two_people cannot
# be enrolled).
OLDER = ("obama", "biden", "adult_a", "adult_b")
GRID = [round(0.30 + 0.01 * i, 2) for i in range(46)]  # 0.30 .. 0.75


@dataclass(frozen=True)
class Photo:
    identity: str
    path: Path
    source: str  # "calibration" or "faces" (the older set)

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"


def children() -> list[Photo]:
    """The children of ../shared/faces: never enrolled here, but filmed, because guardian presence
    uses the same threshold and a child must not pass for an enrolled adult."""
    with open(FACES / "MANIFEST.tsv", newline="") as f:
        return [Photo(row["identity"], FACES / row["file"], "faces")
                for row in csv.DictReader(f, delimiter="\t")
                if row["identity"].startswith("child")]


def photos(older: bool = True) -> list[Photo]:
    """The calibration set (MANIFEST.tsv names who is who), then the older adults."""
    found: list[Photo] = []
    with open(FACES / "calibration" / "MANIFEST.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            found.append(Photo(row["identity"], FACES / row["file"], "calibration"))
    if older:
        with open(FACES / "MANIFEST.tsv", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row["identity"] in OLDER:
                    found.append(Photo(row["identity"], FACES / row["file"], "faces"))
    return found


# -- the live path ----------------------------------------------------------------------------


def analysed_indices(count: int = ANALYSED, fps: int = FPS,
                     every_s: float | None = None) -> list[int]:
    """The stream's frames the verifier would sample: one every `sample_interval_s`."""
    every = IdentityConfig().sample_interval_s if every_s is None else every_s
    return [round((i + 1) * every * fps) for i in range(count)]


def _pose(t: float) -> tuple[float, float, float, float]:
    """Zoom, pan x and y (share of the frame) and rotation (degrees) at time t: someone sitting
    in front of a webcam, moving a little (periods of about a second, never the same pose)."""
    return (1.10 + 0.04 * math.sin(2 * math.pi * t / 1.3),
            0.025 * math.sin(2 * math.pi * t / 1.7),
            0.02 * math.sin(2 * math.pi * t / 2.1),
            3.0 * math.sin(2 * math.pi * t / 1.1))


def motion_blur(rgb: np.ndarray, length: int = BLUR_PX) -> np.ndarray:
    """A horizontal smear of `length` px: a quick head movement within one exposure."""
    a = np.pad(rgb.astype(np.float32), ((0, 0), (length // 2 + 1, length // 2), (0, 0)),
               mode="edge")
    c = np.cumsum(a, axis=1)
    return np.clip((c[:, length:] - c[:, :-length]) / length + 0.5, 0, 255).astype(np.uint8)


def camera_frames(photo: Image.Image, count: int, blurred: int | None) -> list[np.ndarray]:
    """`count` 640x480 camera frames of a head-and-shoulders shot, frame `blurred` smeared."""
    w, h = SIZE
    canvas = head_and_shoulders(photo).resize((w * 3 // 2, h * 3 // 2), Image.Resampling.LANCZOS)
    cw, ch = canvas.size
    out = []
    for i in range(count):
        zoom, px, py, angle = _pose(i / FPS)
        turned = canvas.rotate(angle, Image.Resampling.BICUBIC, fillcolor=WALL)
        vw, vh = cw / zoom, ch / zoom
        cx, cy = cw / 2 + px * cw, ch / 2 + py * ch
        frame = np.asarray(turned.resize(SIZE, Image.Resampling.BILINEAR,
                                         box=(cx - vw / 2, cy - vh / 2, cx + vw / 2, cy + vh / 2)))
        out.append(motion_blur(frame) if i == blurred else frame)
    return out


def vp8_roundtrip(frames: Sequence[np.ndarray], bitrate: int = BITRATE,
                  fps: int = FPS) -> list[np.ndarray]:
    """Encode the frames as one real-time VP8 stream (one key frame, then inter frames, libvpx
    at `bitrate` with a browser's speed and quantiser range) and decode it as the node does."""
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height = SIZE
    enc.pix_fmt = "yuv420p"
    enc.bit_rate = bitrate
    enc.time_base = Fraction(1, fps)
    enc.framerate = Fraction(fps, 1)
    enc.gop_size = 10_000
    enc.options = {"deadline": "realtime", "cpu-used": "-6", "lag-in-frames": "0",
                   "error-resilient": "1", "qmin": "2", "qmax": "56", "threads": "1"}
    packets: list[av.Packet] = []
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        packets.extend(enc.encode(frame))
    packets.extend(enc.encode(None))
    dec = av.CodecContext.create("vp8", "r")
    decoded = []
    for packet in packets:
        for frame in dec.decode(av.Packet(bytes(packet))):
            decoded.append(frame.to_ndarray(format="rgb24"))
    if len(decoded) != len(frames):
        raise RuntimeError(f"VP8 round trip: {len(frames)} frames in, {len(decoded)} out")
    return decoded


def live_frames(source: Path | Image.Image, count: int = ANALYSED,
                blurred: int | None = BLURRED) -> list[np.ndarray]:
    """The `count` analysed frames of the photo's live clip, as the node decodes them."""
    idx = analysed_indices(count)
    at = idx[blurred] if blurred is not None and blurred < count else None
    decoded = vp8_roundtrip(camera_frames(load_photo(source), idx[-1] + 1, at))
    return [decoded[i] for i in idx]


# -- one photo: its enrollment and its live frames --------------------------------------------


@dataclass
class Measured:
    photo: Photo
    enroll_error: str | None = None
    enroll_face_px: int = 0
    encoding: list[float] | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)  # faces, face_px, encoding
    cpu_s: float = 0.0


def measure(photo: Photo) -> Measured:
    """Enroll the photo as an upload, and analyse its live clip's frames."""
    started = time.process_time()
    cfg = IdentityConfig()
    enrolled = worker.enroll(photo.path.read_bytes(), cfg.min_face_px, cfg.photo)
    m = Measured(photo, enroll_error=enrolled.error, enroll_face_px=enrolled.face_px,
                 encoding=enrolled.encoding)
    probe = enrolled.encoding or [0.0] * 128
    for rgb in live_frames(photo.path):
        # `known` makes the worker compute the distance itself: checked below against the one
        # this bench computes from the encoding for every other enrolled photo.
        r = worker.analyse(rgb, known=probe)
        if r.encoding is not None:
            mine = float(np.linalg.norm(np.asarray(r.encoding) - np.asarray(probe)))
            if abs(mine - (r.distance or 0.0)) > 1e-6:
                raise RuntimeError(f"distance {mine} is not the worker's {r.distance}")
        m.frames.append({"faces": r.faces, "face_px": r.face_px, "encoding": r.encoding})
    m.cpu_s = time.process_time() - started
    return m


def _measure_all(items: list[Photo], jobs: int) -> list[Measured]:
    if jobs <= 1:
        worker.initialise()
        out = []
        for i, p in enumerate(items):
            out.append(measure(p))
            print(f"[{i + 1}/{len(items)}] {p.name}: {out[-1].cpu_s:.1f} s", file=sys.stderr)
        return out
    with ProcessPoolExecutor(jobs, initializer=worker.initialise) as pool:
        return list(pool.map(measure, items))


# -- pairs and curves -------------------------------------------------------------------------


def _distance(a: list[float], b: list[float] | None) -> float | None:
    if b is None:
        return None
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def pairs(measured: list[Measured]) -> list[dict[str, Any]]:
    """Every enrolled reference against every OTHER photo's live frames."""
    out = []
    for ref in measured:
        if ref.encoding is None:
            continue
        for live in measured:
            if live is ref:
                continue
            frames = [_distance(ref.encoding, f["encoding"]) for f in live.frames]
            seen = [d for d in frames if d is not None]
            out.append({
                "enrolled": ref.photo.name, "live": live.photo.name,
                "same": ref.photo.identity == live.photo.identity,
                "single": frames[0],
                "frames": [None if d is None else round(d, 4) for d in frames],
                "fused": fused_distance(seen) if seen else None,
            })
    return out


def child_rows(measured: list[Measured], kids: list[Measured]) -> list[dict[str, Any]]:
    """Each child's live clip against its closest enrolled adult."""
    out = []
    for kid in kids:
        rows = pairs([*measured, kid])
        rows = [r for r in rows if r["live"] == kid.photo.name]
        closest = min(rows, key=lambda r: r["single"] if r["single"] is not None else math.inf)
        out.append({"live": kid.photo.name, "closest_adult": closest["enrolled"],
                    "single": closest["single"] and round(closest["single"], 4),
                    "smallest_any_frame": min(d for r in rows for d in r["frames"]
                                              if d is not None),
                    "smallest_fused": round(min(r["fused"] for r in rows
                                                if r["fused"] is not None), 4)})
    return out


def _percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    v = sorted(values)
    q = statistics.quantiles(v, n=100, method="inclusive") if len(v) > 1 else v * 99
    return {"n": len(v), "min": round(v[0], 4), "p1": round(q[0], 4), "p5": round(q[4], 4),
            "p25": round(q[24], 4), "median": round(statistics.median(v), 4),
            "p75": round(q[74], 4), "p95": round(q[94], 4), "p99": round(q[98], 4),
            "max": round(v[-1], 4), "mean": round(statistics.fmean(v), 4)}


def _trials(rows: list[dict[str, Any]], kind: str, same: bool) -> list[float]:
    """Distances of one kind; a frame without a face is a distance of +inf (no match)."""
    out: list[float] = []
    for r in rows:
        if r["same"] is not same:
            continue
        values = r["frames"] if kind == "per_frame" else [r[kind]]
        out.extend(math.inf if d is None else d for d in values)
    return out


def curve(same: list[float], diff: list[float], grid: Sequence[float] = GRID
          ) -> list[dict[str, float]]:
    """False accepts (different person at or under t) and false rejects (same person over t)."""
    return [{"threshold": t,
             "far": round(sum(d <= t for d in diff) / len(diff), 5),
             "frr": round(sum(s > t for s in same) / len(same), 5),
             "false_accepts": sum(d <= t for d in diff),
             "false_rejects": sum(s > t for s in same)} for t in grid]


def choose(same: list[float], diff: list[float], grid: Sequence[float] = GRID
           ) -> dict[str, Any]:
    """The threshold on the grid with no false accept and the fewest false rejects; of equals,
    the one in the middle of the gap (as far from the worst same pair as from the closest
    impostor, at the grid's resolution)."""
    closest = min(diff)
    allowed = [t for t in grid if t < closest]
    if not allowed:
        return {"threshold": None, "reason": "every grid threshold accepts an impostor"}
    fewest = min(sum(s > t for s in same) for t in allowed)
    best = [t for t in allowed if sum(s > t for s in same) == fewest]
    worst_same = max(s for s in same if math.isfinite(s))
    target = (worst_same + closest) / 2 if fewest == 0 else max(best)
    t = min(best, key=lambda x: (abs(x - target), -x))
    return {"threshold": t, "false_rejects": fewest,
            "margin_same": round(t - worst_same, 4), "margin_different": round(closest - t, 4),
            "separated": worst_same < closest}


def _pair_of(rows: list[dict[str, Any]], kind: str, same: bool) -> list[str] | None:
    """The worst same-person pair (largest distance) or the closest impostor pair."""
    found = [r for r in rows if r["same"] is same and r[kind] is not None]
    if not found:
        return None
    pick = (max if same else min)(found, key=lambda r: r[kind])
    return [pick["enrolled"], pick["live"]]


def _side(rows: list[dict[str, Any]], kind: str, configured: float) -> dict[str, Any]:
    same, diff = _trials(rows, kind, True), _trials(rows, kind, False)
    finite_same = [s for s in same if math.isfinite(s)]
    one = kind != "per_frame"  # per frame: no single pair to name
    return {
        "same": _percentiles(finite_same), "different": _percentiles(diff),
        "same_no_face": len(same) - len(finite_same),
        "largest_same": round(max(finite_same), 4),
        "largest_same_pair": _pair_of(rows, kind, True) if one else None,
        "smallest_different": round(min(diff), 4),
        "smallest_different_pair": _pair_of(rows, kind, False) if one else None,
        "at_configured": curve(same, diff, [configured])[0],
        "choice": choose(same, diff), "curve": curve(same, diff),
    }


def stills(measured: list[Measured]) -> list[dict[str, Any]]:
    """Enrolled photo against enrolled photo (both uploads, no video): what the live path adds
    is the difference between these and the live sides."""
    done = [m for m in measured if m.encoding is not None]
    return [{"enrolled": a.photo.name, "live": b.photo.name,
             "same": a.photo.identity == b.photo.identity,
             "still": _distance(a.encoding, b.encoding)}  # type: ignore[arg-type]
            for i, a in enumerate(done) for b in done[i + 1:]]


def by_frame(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each analysed frame's worst same-person and closest impostor distance (the blurred one
    stands out)."""
    out = []
    for i in range(ANALYSED):
        same = [r["frames"][i] for r in rows if r["same"] and r["frames"][i] is not None]
        diff = [r["frames"][i] for r in rows if not r["same"] and r["frames"][i] is not None]
        out.append({"frame": i, "blurred": i == BLURRED, "largest_same": max(same),
                    "median_same": round(statistics.median(same), 4),
                    "smallest_different": min(diff),
                    "median_different": round(statistics.median(diff), 4),
                    "no_face": sum(r["frames"][i] is None for r in rows)})
    return out


def _versions() -> dict[str, Any]:
    from importlib.metadata import version

    import dlib

    # face_recognition's own __version__ still says 1.2.3 in its 1.3.0 release.
    return {"face_recognition": version("face_recognition"), "dlib": dlib.__version__,
            "dlib_package": f"dlib-bin {version('dlib-bin')}",
            "av": av.__version__, "numpy": np.__version__, "python": platform.python_version(),
            # The worker's detector: its DETECTOR name if it states one, else what it calls now.
            "detector": getattr(worker, "DETECTOR", "dlib HOG (face_recognition.face_locations,"
                                                   " upsample 1)"),
            "detect_width": getattr(worker, "DETECT_WIDTH", None)}


def run(older: bool = True, jobs: int = 1) -> dict[str, Any]:
    started = time.monotonic()
    everyone = _measure_all(photos(older) + children(), jobs)
    measured = [m for m in everyone if not m.photo.identity.startswith("child")]
    rows = pairs(measured)
    cfg = IdentityConfig()
    result = {
        "bench": "calibration", "date": time.strftime("%Y-%m-%d"), "versions": _versions(),
        "live_path": {"size": list(SIZE), "fps": FPS, "codec": "VP8 (libvpx realtime, cpu-used"
                      " -6, one key frame), decoded by FFmpeg's vp8 as the node does",
                      "bitrate": BITRATE, "analysed_frames": ANALYSED,
                      "analysed_indices": analysed_indices(), "blurred_frame": BLURRED,
                      "blur": f"{BLUR_PX} px horizontal motion blur",
                      "motion": "zoom 1.06-1.14, pan ±2.5% / ±2%, rotation ±3°",
                      "framing": "bench.faces.head_and_shoulders (face 30% of the height)",
                      "single": "analysed frame 0 (0.15 s into the stream)",
                      "fused": "identity.doctor.fusion.fused_distance"
                               f" (median of the best {BEST})"},
        "enrollment": {"min_face_px": cfg.min_face_px, "refused": {
            m.photo.name: m.enroll_error for m in measured if m.enroll_error}},
        "live_no_face": {m.photo.name: [i for i, f in enumerate(m.frames) if f["faces"] == 0]
                         for m in measured if any(f["faces"] == 0 for f in m.frames)},
        "photos": {"count": len(measured),
                   "identities": sorted({m.photo.identity for m in measured})},
        "pairs_count": {"same": sum(r["same"] for r in rows),
                        "different": sum(not r["same"] for r in rows)},
        "configured_threshold": cfg.threshold,
        "stills": _side(stills(measured), "still", cfg.threshold),
        "single": _side(rows, "single", cfg.threshold),
        "per_frame": _side(rows, "per_frame", cfg.threshold),
        "fused": _side(rows, "fused", cfg.threshold),
        "by_frame": by_frame(rows),
        "children_live": child_rows(measured, [m for m in everyone
                                                  if m.photo.identity.startswith("child")]),
        "cpu_s": round(sum(m.cpu_s for m in measured), 1),
        "wall_s": round(time.monotonic() - started, 1),
        "pairs": [{**r, "single": r["single"] and round(r["single"], 4),
                   "fused": r["fused"] and round(r["fused"], 4)} for r in rows],
    }
    return result


def dumps(result: dict[str, Any]) -> str:
    """Indented JSON, but one line per pair and per curve point (a few hundred KB, not MBs)."""
    def flat(value: Any) -> Any:
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return [_Raw(json.dumps(v)) for v in value]
        if isinstance(value, dict):
            return {k: flat(v) for k, v in value.items()}
        return value

    marks: dict[str, str] = {}

    def default(obj: Any) -> Any:
        if isinstance(obj, _Raw):
            key = f"@@{len(marks)}@@"
            marks[key] = obj.text
            return key
        raise TypeError(type(obj))

    text = json.dumps(flat(result), indent=1, default=default)
    for key, raw in marks.items():
        text = text.replace(f'"{key}"', raw)
    return text


@dataclass(frozen=True)
class _Raw:
    text: str


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--plot", type=Path, help="draw histograms and FAR/FRR curves (PNG)")
    ap.add_argument("--jobs", type=int, default=1, help="processes (2 cores: 1 or 2)")
    ap.add_argument("--no-older", action="store_true", help="the calibration set only")
    args = ap.parse_args(argv)
    result = run(older=not args.no_older, jobs=args.jobs)
    text = dumps(result)
    if args.out:
        args.out.write_text(text + "\n")
    if args.plot:
        from bench.calibration_plot import draw

        draw(result, args.plot)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

