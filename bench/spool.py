"""What encrypting the spool as it is written costs (issue 12, item 6).

    python -m bench.spool [--seconds 60] [--repeat 5]

One participant's segment (640x480 30 fps VP8 at 1 Mbit/s plus 20 ms Opus packets, the same
clip as bench.recording), muxed by the recorder's own SegmentMuxer into a plain file and into an
encrypted SpoolFile, then sealed for the store (recorder/segment.py's read of the spool plus
AES-GCM), each `--repeat` times, alternating; CPU seconds of this process (its one thread does
all of it, as the recorder's writer thread does). One JSON document: the median CPU per second of
media in each mode, and the difference as a percent of one core per recorded participant
(a consultation records two). No network, no node: the figure is the encryption alone, which
bench.recording's whole-node windows cannot separate from the machine's noise (about ±1 %).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.clip import Clip, encode_opus, encode_vp8
from recorder.crypto import seal
from recorder.keys import KeyRing
from recorder.spool_file import SpoolFile
from recorder.webm import SegmentMuxer

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # a fixed test key: nothing is kept


def _mux(path: Path, clips: dict[str, Clip], seconds: float, keys: KeyRing | None) -> int:
    muxer = SegmentMuxer(path, keys=keys)
    video, audio = clips["video"].packets, clips["audio"].packets
    t_audio = 0
    for i in range(int(seconds * 30)):
        t_video = round(i * 1000 / 30)
        while t_audio <= t_video:
            muxer.write("audio", audio[(t_audio // 20) % len(audio)], t_audio)
            t_audio += 20
        muxer.write("video", video[i % len(video)], t_video)
    return muxer.close().size


def _seal(path: Path, keys: KeyRing, sealed_spool: bool) -> None:
    out = path.with_name("sealed.enc")
    if sealed_spool:
        with SpoolFile.open(path, keys) as f:
            seal(f, f.size, out, keys)
    else:
        with open(path, "rb") as f:
            seal(f, path.stat().st_size, out, keys)
    out.unlink()


def run(seconds: float, repeat: int) -> dict[str, Any]:
    clips = {"video": encode_vp8(640, 480, fps=30, seconds=4, bitrate=1_000_000),
             "audio": encode_opus(1.0)}
    keys = KeyRing(KEY)
    cpu: dict[str, list[float]] = {"plain": [], "encrypted": []}
    size = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            for mode in ("plain", "encrypted"):
                path = Path(tmp) / f"{mode}.webm"
                spool_keys = keys if mode == "encrypted" else None
                start = time.process_time()
                size = _mux(path, clips, seconds, spool_keys)
                _seal(path, keys, spool_keys is not None)
                cpu[mode].append(time.process_time() - start)
                path.unlink()
    per_s = {mode: statistics.median(v) / seconds for mode, v in cpu.items()}
    return {
        "benchmark": "spool",
        "media_seconds": seconds,
        "repeat": repeat,
        "segment_mb": round(size / 1e6, 2),
        "cpu_ms_per_media_second": {m: round(v * 1000, 3) for m, v in per_s.items()},
        "cpu_s_runs": {m: [round(x, 4) for x in v] for m, v in cpu.items()},
        "extra_cpu_percent_per_participant": round((per_s["encrypted"] - per_s["plain"]) * 100,
                                                   3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(run(args.seconds, args.repeat), indent=2))


if __name__ == "__main__":
    main()
