"""Identity benchmark (issue 3): verification latency and the CPU cost of continuous checks.

    .venv/bin/python -m bench.identity [--checks 10] [--detector hog]

A real node on 127.0.0.1 with verification on and a two-action sequence (turn_left, then
turn_right; blinks cannot be made from still photos). The doctor is a scripted WebRTC client
whose camera is VP8 made from real photos (../shared/faces): obama2, whose head is turned to the
doctor's right, obama.jpg (facing the camera: a turn's middle pose, held until the node has
judged it) and obama2's mirror image (turned to the left). Each action is done only once the node
has announced it: right → front → left, then left → front → right.
Reported (JSON):
- join_to_verified_s: the doctor's join → the `verified` message;
- after_challenge_s: the moment the last action's last pose starts → `verified` (target < 3 s;
  it includes judging that pose and the fused identity check of the action frames);
- loop_lag_ms: the node's event-loop lag (max, p99) sampled every 10 ms while faces are checked
  (face work is in a process pool: this shows it does not stall media or signaling);
- recheck: CPU per continuous check (frame decodes in the node + detection and encoding of the
  fused frames in the worker, `frames_per_check` of them) and the resulting share of one core at
  the default cadence (target < 2%).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiohttp.test_utils import TestServer
from PIL import Image, ImageOps

from bench.client import CallClient
from bench.clip import Clip
from bench.faces import BIDEN, OBAMA, OBAMA_2, head_and_shoulders  # ../shared/faces


def photo_clip(photo: Image.Image, fps: int = 15, seconds: float = 1.0,
               size: tuple[int, int] = (640, 480)) -> Clip:
    """A VP8 clip of one photo, every frame a key frame (so a track can switch clips anywhere)."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = size
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = 1_500_000
    codec.time_base = Fraction(1, fps)
    codec.gop_size = 1
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    canvas = ImageOps.pad(photo.convert("RGB"), size, color=(214, 220, 222))
    packets: list[bytes] = []
    for i in range(int(fps * seconds)):
        frame = av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        frame.pict_type = av.video.frame.PictureType.I
        packets.extend(bytes(p) for p in codec.encode(frame))
    packets.extend(bytes(p) for p in codec.encode(None))
    return Clip("video", packets, 90000 // fps, 90000)


def camera_shots() -> dict[str, Clip]:
    turned = head_and_shoulders(OBAMA_2)
    return {"obama2": photo_clip(turned), "obama2_mirrored": photo_clip(ImageOps.mirror(turned)),
            "obama_front": photo_clip(head_and_shoulders(OBAMA)),
            "biden": photo_clip(head_and_shoulders(BIDEN))}


async def until(test: Any, timeout: float, what: str) -> None:
    """Poll `test()` (cheap, in-process state) until true; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)


def show(client: CallClient, clip: Clip) -> None:
    """Switch the client's camera to `clip` (every frame is a key frame, so at once)."""
    for track in client.tracks:
        if track.kind == "video":
            track.clip = clip
            track.stamp = False


class LoopLag:
    """Samples how late a 10 ms timer fires: the event loop's responsiveness."""

    def __init__(self, every_s: float = 0.01) -> None:
        self.every_s = every_s
        self.lags: list[float] = []
        # What the process held before (a long test session's heap, the camera clips) is not
        # what is measured: out of the collector's way, or a full collection of it reads as a
        # stall of the node (seen once: 190 ms, late in the whole suite).
        gc.freeze()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.every_s)
            self.lags.append(time.perf_counter() - start - self.every_s)

    async def stop(self) -> dict[str, float]:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        gc.unfreeze()
        lags = sorted(self.lags) or [0.0]
        return {"samples": len(lags), "max_ms": round(lags[-1] * 1000, 1),
                "p99_ms": round(lags[int(len(lags) * 0.99) - 1 if len(lags) > 1 else 0] * 1000, 1),
                "mean_ms": round(statistics.fmean(lags) * 1000, 2)}


class IdentityNode:
    """A node with identity verification on, in this process."""

    def __init__(self, data_dir: Path, **config: Any) -> None:
        from core.config import load_settings
        from core.config.identity import IdentityConfig
        from server.app import create_app

        settings = load_settings(data_dir=data_dir, token_secret="bench-" + "x" * 40,
                                 host="127.0.0.1", port=0, ice_host_addresses=["127.0.0.1"],
                                 ice_servers=[])
        # Identity alone: the demo patient is a child, and guardian presence is bench/presence.py.
        self.settings = replace(
            settings, identity=replace(IdentityConfig(), required=True, **config).checked(),
            presence=settings.presence.with_(enabled=False))
        self.app = create_app(self.settings)

    async def __aenter__(self) -> IdentityNode:
        from core.context import CONTEXT_KEY
        from signaling.handler import SIGNALING_KEY

        self.server = TestServer(self.app, host="127.0.0.1")
        await self.server.start_server()
        self.session = aiohttp.ClientSession()
        self.ctx = self.app[CONTEXT_KEY]
        self.rooms = self.app[SIGNALING_KEY].rooms
        self.url = str(self.server.make_url("")).rstrip("/")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        await self.server.close()


async def verified_call(node: IdentityNode, shots: dict[str, Clip]) -> dict[str, Any]:
    """Book, enroll obama.jpg, join both sides, pass the turn challenge; return timings."""
    from core.auth import TOKENS_KEY
    from identity.doctor.registry_api import IDENTITY_KEY
    from identity.faces.enrollment import Whose, enroll
    from server.demo import seed

    svc = node.app[IDENTITY_KEY]
    await svc.pool.warm()
    booking = await seed(node.ctx.db, node.settings, node.app[TOKENS_KEY])
    await enroll(svc, Whose.doctor(booking.doctor_id), OBAMA.read_bytes(),
                 svc.config.min_face_px, "admin:bench")
    guardian = CallClient(node.url, booking.guardian_link.split("#token=")[1], {}, node.session)
    doctor = CallClient(node.url, booking.doctor_link.split("#token=")[1],
                        {"video": shots["obama2"]}, node.session)
    await guardian.connect()
    joined_at = time.monotonic()
    await doctor.connect()
    await doctor.start_media()
    show(doctor, shots["obama2"])
    verification = svc.verifications[booking.consultation_id]
    turned_at, challenges = await do_actions(doctor, verification, shots)
    await doctor.expect("verify", timeout=30, step="verified")
    verified_at = time.monotonic()
    return {"booking": booking, "doctor": doctor, "guardian": guardian,
            "challenge": ",".join(challenges),
            "join_to_verified_s": round(verified_at - joined_at, 3),
            "after_challenge_s": round(verified_at - turned_at, 3)}


OTHER_SIDE = {"obama2": "obama2_mirrored", "obama2_mirrored": "obama2"}


async def turn(doctor: CallClient, verification: Any, shots: dict[str, Clip], end: str) -> float:
    """Turn the head from the other side, through facing the camera, to `end` (a shot): each
    pose before the last is held until the verifier has judged three frames of it, so the whole
    movement is seen after the announcement however short the node's path (a real head starts
    where it is; a turn seen only from the middle is a photo swap); returns when the last pose
    started."""
    for pose in (OTHER_SIDE[end], "obama_front"):
        held = verification.poses_seen + 3
        show(doctor, shots[pose])
        await until(lambda held=held: verification.poses_seen >= held, 20, f"{pose} seen")
    show(doctor, shots[end])
    return time.monotonic()


async def do_actions(doctor: CallClient, verification: Any, shots: dict[str, Clip],
                     steps: int | None = None) -> tuple[float, list[str]]:
    """Do each announced action after its announcement (turns only), starting turned to the
    right (obama2); returns when the last one's last pose started, and the actions asked."""
    asked: list[str] = []
    done_at = time.monotonic()
    while True:
        step = await doctor.expect("verify", timeout=60, step="challenge")
        asked.append(step["challenge"])
        ends = {"turn_left": "obama2_mirrored", "turn_right": "obama2"}
        done_at = await turn(doctor, verification, shots, ends[step["challenge"]])
        if step["index"] == step["of"] or (steps is not None and len(asked) >= steps):
            return done_at, asked


async def run(checks: int, detector: str | None = None) -> dict[str, Any]:
    from core.consent import CURRENT_VERSION, record_consent

    shots = camera_shots()
    with tempfile.TemporaryDirectory() as tmp:
        chosen = {"detector": detector} if detector else {}
        async with IdentityNode(Path(tmp), challenge="turn_left,turn_right", **chosen) as node:
            lag = LoopLag()
            call = await verified_call(node, shots)
            verify_lag = await lag.stop()
            doctor, guardian = call["doctor"], call["guardian"]
            cid = call["booking"].consultation_id
            await record_consent(node.ctx.db, node.ctx.events, cid, "guardian:bench",
                                 CURRENT_VERSION)
            await doctor.send({"type": "accept"})
            await doctor.expect("state", timeout=10, state="active")
            from identity.doctor.registry_api import IDENTITY_KEY

            svc = node.app[IDENTITY_KEY]
            assurance = await svc.assurance(cid, timeout=10)
            lag = LoopLag()
            worker_cpu: list[float] = []
            decode_cpu: list[float] = []
            frames: list[int] = []
            wall: list[float] = []
            for _ in range(checks):
                started = time.perf_counter()
                reason, facts = await assurance.check_once()
                wall.append(time.perf_counter() - started)
                assert reason is None, (reason, facts)
                worker_cpu.append(facts["worker_cpu_s"])
                decode_cpu.append(facts["decode_cpu_s"])
                frames.append(len(facts["faces"]))
            check_lag = await lag.stop()
            per_check = statistics.fmean(worker_cpu) + statistics.fmean(decode_cpu)
            cadence = svc.config.recheck_s
            await doctor.close()
            await guardian.close()
    return {
        "detector": svc.config.detector,
        "verification": {
            "challenge": call["challenge"],
            "join_to_verified_s": call["join_to_verified_s"],
            "after_challenge_s": call["after_challenge_s"],
            "target_after_challenge_s": 3.0,
            "loop_lag_ms": verify_lag,
        },
        "recheck": {
            "checks": checks,
            "worker_cpu_s_per_check": round(statistics.fmean(worker_cpu), 4),
            "node_decode_cpu_s_per_check": round(statistics.fmean(decode_cpu), 4),
            "frames_per_check": round(statistics.fmean(frames), 2),
            "recheck_frames": svc.config.recheck_frames,
            "wall_s_per_check": round(statistics.fmean(wall), 3),
            "cadence_s": cadence,
            "core_share_percent": round(100 * per_check / cadence, 3),
            "target_core_share_percent": 2.0,
            "loop_lag_ms": check_lag,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10)
    parser.add_argument("--detector", choices=("blazeface", "hog"),
                        help="TC_FACE_DETECTOR for this node (default: the configured default)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.checks, args.detector)), indent=2))


if __name__ == "__main__":
    main()
