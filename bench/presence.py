"""Guardian presence benchmark (issue 4): the node's CPU for one pediatric consultation with
presence checks on, and the time from the guardian leaving the picture to the alert.

    python -m bench.presence [--seconds 30] [--leaves 3] [--no-baseline] [--detector hog]

A real node process (`python -m server run`, SQLite in a temp dir, 127.0.0.1 only, recording on,
defaults for presence: 1 sample/s, absent after 5 s unseen) hosts one booked pediatric
consultation whose guardian is enrolled from obama/obama.jpg. The patient side sends pre-encoded
640x480 30 fps VP8 (~1 Mbit/s, a key frame a second, a slow pan over a real photo: the guardian
from obama2.jpg beside a child) plus Opus; the doctor sends the synthetic VP8 clip plus Opus. CPU
is read from /proc for the node and its face workers over a steady window; then the patient clip
switches (at a key frame) to the child alone, and the time until the doctor's client gets the
`presence: absent` message is measured, `--leaves` times. With the baseline (default) the same
call is measured once more with TC_GUARDIAN_PRESENCE=0, so the cost of presence itself shows.
Doctor identity is off here (TC_IDENTITY_REQUIRED=0): bench/identity.py measures its re-checks.
--detector sets the node's TC_FACE_DETECTOR (default: the node's own default).
One JSON document goes to stdout, logs to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import secrets
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from PIL import Image

from bench.client import CallClient
from bench.clip import Clip, encode_opus, encode_vp8
from bench.relay import (
    NODE_START_TIMEOUT_S,
    cpu_percent,
    cpu_seconds,
    free_port,
    machine,
    process_tree,
    start_node,
    stop_node,
    wait_healthy,
)

log = logging.getLogger("bench.presence")

FPS = 30
GOP = 30
WARMUP_S = 5.0
TARGET_CPU = 20.0  # % of one core: relay, recording, doctor re-checks and presence together
TARGET_ALERT_S = 6.0


def scene_clip(img: Image.Image, seconds: float = 4.0, size: tuple[int, int] = (640, 480),
               bitrate: int = 1_000_000) -> Clip:
    """VP8 of a photo with a slow pan/zoom (every frame differs, as from a real camera)."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = size
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = bitrate
    codec.time_base = Fraction(1, FPS)
    codec.gop_size = GOP
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                     "kf-max-dist": str(GOP), "kf-min-dist": str(GOP)}
    canvas = img.convert("RGB").resize((size[0] * 3 // 2, size[1] * 3 // 2))
    cw, ch = canvas.size
    packets: list[bytes] = []
    for i in range(int(seconds * FPS)):
        t = i / FPS
        zoom = 1.05 - 0.05 * math.cos(2 * math.pi * t / seconds)
        vw, vh = cw / zoom, ch / zoom
        cx = cw / 2 + (cw - vw) / 2 * 0.9 * math.sin(2 * math.pi * t / seconds)
        box = (cx - vw / 2, (ch - vh) / 2, cx + vw / 2, (ch + vh) / 2)
        rgb = np.asarray(canvas.resize(size, Image.Resampling.BILINEAR, box=box))
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        if i % GOP == 0:
            frame.pict_type = av.video.frame.PictureType.I
        packets.extend(bytes(p) for p in codec.encode(frame))
    packets.extend(bytes(p) for p in codec.encode(None))
    return Clip("video", packets, 90000 // FPS, 90000)


async def switch_at_keyframe(client: CallClient, clip: Clip, timeout: float = 5.0) -> float:
    """Swap the camera clip just before a key frame (both clips share the GOP); return when."""
    track = next(t for t in client.tracks if t.kind == "video")
    deadline = time.monotonic() + timeout
    while track.sent % GOP != GOP - 1:
        if time.monotonic() > deadline:
            raise TimeoutError("no key frame boundary reached")
        await asyncio.sleep(0.002)  # polling the sender's frame counter, not a synchronisation
    track.clip, track.stamp = clip, False
    return time.monotonic()


async def seed_pediatric(data_dir: Path, database_url: str, secret: str, port: int
                         ) -> tuple[str, str, str]:
    """One booked pediatric consultation with its guardian enrolled; (cid, guardian, doctor)."""
    from bench.faces import OBAMA
    from core.auth import Tokens
    from core.config import load_settings
    from core.store import Database
    from core.store.faces import GuardianFaceEnrollment
    from identity.faces import worker
    from server.demo import seed

    settings = load_settings(data_dir=data_dir, database_url=database_url, token_secret=secret,
                             host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}")
    db = await Database.open(database_url)
    try:
        booking = await seed(db, settings, Tokens(settings.token_secret, settings.token_ttl_s))
        enrolled = await asyncio.to_thread(worker.enroll, OBAMA.read_bytes(), 80)
        assert enrolled.encoding is not None, enrolled.message
        async with db.session() as session, session.begin():
            session.add(GuardianFaceEnrollment(
                guardian_id=booking.guardian_id, encoding=enrolled.encoding,
                photo_sha256="bench", photo_path="bench", face_px=enrolled.face_px,
                enrolled_by="admin:bench"))
        return (booking.consultation_id, booking.guardian_link.split("#token=")[1],
                booking.doctor_link.split("#token=")[1])
    finally:
        await db.close()


def start_presence_node(data_dir: Path, database_url: str, secret: str, port: int,
                        presence: bool, detector: str | None = None) -> subprocess.Popen:
    """The relay node with recording on, identity off, and presence on or off."""
    extra = {"TC_FACE_DETECTOR": detector} if detector else {}
    return start_node(data_dir, database_url, secret, port, TC_RECORDING="1",
                      TC_GUARDIAN_PRESENCE="1" if presence else "0", **extra)


async def measure(presence: bool, seconds: float, leaves: int,
                  shots: dict[str, Clip], detector: str | None = None) -> dict[str, Any]:
    from core.consent import CURRENT_VERSION

    with tempfile.TemporaryDirectory(prefix="bench-presence-") as tmp:
        data_dir = Path(tmp)
        port, secret = free_port(), secrets.token_urlsafe(32)
        database_url = f"sqlite+aiosqlite:///{data_dir / 'node.db'}"
        _cid, g_token, d_token = await seed_pediatric(data_dir, database_url, secret, port)
        node = start_presence_node(data_dir, database_url, secret, port, presence, detector)
        base = f"http://127.0.0.1:{port}"
        try:
            await asyncio.to_thread(wait_healthy, node, base, NODE_START_TIMEOUT_S)
            async with aiohttp.ClientSession() as session:
                guardian = CallClient(base, g_token, {"video": shots["with"],
                                                      "audio": shots["audio"]}, session)
                doctor = CallClient(base, d_token, {"video": shots["doctor"],
                                                    "audio": shots["audio"]}, session)
                await guardian.connect()
                await guardian.send({"type": "consent", "version": CURRENT_VERSION})
                await guardian.start_media()
                await doctor.connect()
                await doctor.start_media()
                await guardian.wait_connected(20)
                await doctor.wait_connected(20)
                joined = time.monotonic()
                if presence:
                    await doctor.expect("presence", timeout=60, guardian="present")
                gate_s = time.monotonic() - joined
                await doctor.send({"type": "accept"})
                await doctor.expect("state", timeout=10, state="active")
                await asyncio.sleep(WARMUP_S)  # the measured window starts after a warm-up
                pids = process_tree(node.pid)
                before, t0 = cpu_seconds(pids), time.monotonic()
                await asyncio.sleep(seconds)  # the steady window being measured
                after, wall = cpu_seconds(process_tree(node.pid)), time.monotonic() - t0
                main_before = {node.pid: before.get(node.pid, 0.0)}
                main_after = {node.pid: after.get(node.pid, 0.0)}
                result: dict[str, Any] = {
                    "presence": presence,
                    "window_s": round(wall, 1),
                    "node_cpu_percent": round(cpu_percent(before, after, wall), 1),
                    "node_main_process_cpu_percent": round(
                        cpu_percent(main_before, main_after, wall), 1),
                    "face_workers_cpu_percent": round(
                        cpu_percent(before, after, wall)
                        - cpu_percent(main_before, main_after, wall), 1),
                    "video_fps_at_doctor": round(doctor.received["video"].fps_since(t0), 1),
                }
                if presence:
                    latencies = []
                    for _ in range(leaves):
                        left = await switch_at_keyframe(guardian, shots["alone"])
                        await doctor.expect("presence", timeout=30, guardian="absent")
                        latencies.append(round(time.monotonic() - left, 2))
                        back = await switch_at_keyframe(guardian, shots["with"])
                        await doctor.expect("presence", timeout=30, guardian="present")
                        result.setdefault("return_to_present_s", []).append(
                            round(time.monotonic() - back, 2))
                    result |= {"join_to_guardian_present_s": round(gate_s, 2),
                               "leave_to_alert_s": latencies,
                               "leave_to_alert_max_s": max(latencies)}
                await guardian.close()
                await doctor.close()
        finally:
            stop_node(node)
    return result


async def run(seconds: float, leaves: int, baseline: bool,
              detector: str | None = None) -> dict[str, Any]:
    from bench.faces import CHILD_A, OBAMA_2, empty_scene, side_by_side
    from signaling import ice

    ice.use_host_addresses(["127.0.0.1"])  # the clients' side too: loopback only
    log.info("encoding the camera clips")
    shots = {"with": scene_clip(side_by_side(OBAMA_2, CHILD_A)),
             "alone": scene_clip(side_by_side(empty_scene(), CHILD_A)),
             "doctor": encode_vp8(640, 480, fps=30, seconds=4.0, bitrate=1_000_000),
             "audio": encode_opus(1.0)}
    runs = [await measure(True, seconds, leaves, shots, detector)]
    if baseline:
        runs.append(await measure(False, seconds, 0, shots))
    on = runs[0]
    report: dict[str, Any] = {
        "benchmark": "guardian presence, one pediatric consultation",
        "machine": machine(),
        "settings": {"sample_fps": 1, "absent_after_s": 5, "present_after": 2,
                     "detector": detector or "node default",
                     "video": "640x480 30 fps VP8 ~1 Mbit/s each way",
                     "recording": True, "doctor_identity": "off (see bench/identity.py)"},
        "runs": runs,
        "cpu_per_pediatric_consultation_percent": on["node_cpu_percent"],
        "target_cpu_percent": TARGET_CPU,
        "cpu_ok": on["node_cpu_percent"] < TARGET_CPU,
        "leave_to_alert_max_s": on["leave_to_alert_max_s"],
        "target_alert_s": TARGET_ALERT_S,
        "alert_ok": on["leave_to_alert_max_s"] < TARGET_ALERT_S,
    }
    if baseline:
        report["presence_cost_percent"] = round(
            on["node_cpu_percent"] - runs[1]["node_cpu_percent"], 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--leaves", type=int, default=3, help="guardian departures to time")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run with presence off")
    parser.add_argument("--detector", choices=("blazeface", "hog"),
                        help="the node's TC_FACE_DETECTOR (default: the node's default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    report = asyncio.run(run(args.seconds, args.leaves, not args.no_baseline, args.detector))
    json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
