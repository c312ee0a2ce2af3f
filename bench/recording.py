"""Recording cost: the same consultations through a node with recording off, then on.

    python -m bench.recording [--consultations 2] [--seconds 20] [--warmup 5] [--segment-s 60]
                              [--s3]

Each run starts a fresh node process (`python -m server run`, TC_RECORDING=0 or 1), books N
consultations, connects 2N clients (pre-encoded 640x480 30 fps VP8 at 1 Mbit/s plus Opus, in
this process) and, after the warm-up, measures the node's CPU (its whole process tree, from
/proc) over one window, plus the bytes the recorder stored. One JSON document goes to stdout:
the recording's cost is the difference between the two runs, per consultation, in percent of
one core, and the stored MB per minute of consultation. The target is at most +2 % of a core.

--s3 adds a third run recording into an S3-protocol bucket with Object Lock (issue 12): moto's
server, started as its own process (bench/s3_server.py), whose CPU is not the node's (a real
store is elsewhere), though it shares this machine's cores. The node's extra CPU for S3 over the
local folder is signing, TLS-less HTTP and boto3's bookkeeping per segment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.client import CallClient
from bench.clip import Clip, encode_opus, encode_vp8
from bench.relay import (
    cpu_seconds,
    free_port,
    process_tree,
    seed_consultations,
    start_node,
    wait_healthy,
    wait_state,
)
from bench.s3_server import S3Server, moto_server
from core.consent import CURRENT_VERSION
from signaling import ice

log = logging.getLogger("bench.recording")
TARGET_EXTRA_CPU = 2.0


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _start(data: Path, port: int, secret: str, recording: bool, segment_s: float,
           store: dict[str, str]) -> subprocess.Popen:
    return start_node(data, None, secret, port, TC_RECORDING="1" if recording else "0",
                      TC_RECORDING_SEGMENT_S=str(segment_s), **store)


async def _call(url: str, pair: tuple[str, str], clips: dict[str, Clip],
                session: aiohttp.ClientSession) -> list[CallClient]:
    guardian = CallClient(url, pair[0], clips, session)
    doctor = CallClient(url, pair[1], clips, session)
    for side in (guardian, doctor):
        await side.connect(20)
        await side.start_media(20)
    await guardian.wait_connected(20)
    await doctor.wait_connected(20)
    await guardian.send({"type": "consent", "version": CURRENT_VERSION})
    await doctor.expect("consent", 20, given=True)
    await doctor.send({"type": "accept", "id": "bench"})
    await wait_state(doctor, "active", 20)
    return [guardian, doctor]


async def run_once(args: argparse.Namespace, recording: bool, clips: dict[str, Clip],
                   s3: S3Server | None = None) -> dict[str, Any]:
    """`s3`: record into a fresh Object Lock bucket on that server, not the local folder."""
    n, seconds, warmup = args.consultations, args.seconds, args.warmup
    bucket = s3.bucket(object_lock=True) if s3 is not None else ""
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        data, port, secret = Path(tmp), free_port(), secrets.token_urlsafe(40)
        url = f"http://127.0.0.1:{port}"
        db_url = f"sqlite+aiosqlite:///{data}/teleconsult.db"
        pairs = await seed_consultations(data, db_url, secret, port, n)
        node = _start(data, port, secret, recording, args.segment_s, s3.env(bucket) if s3 else {})

        def stored() -> int:
            local = _tree_size(data / "recordings")  # the spool (and the local store)
            return local + (s3.stored_bytes(bucket) if s3 is not None else 0)

        try:
            await asyncio.to_thread(wait_healthy, node, url, 30)
            async with aiohttp.ClientSession() as session:
                clients = [c for pair in pairs
                           for c in await _call(url, pair, clips, session)]
                await asyncio.sleep(warmup)  # the warm-up, by design (not a synchronisation)
                before, bytes_before, t0 = (cpu_seconds(process_tree(node.pid)),
                                            await asyncio.to_thread(stored), time.monotonic())
                await asyncio.sleep(seconds)  # the measured window
                after, bytes_after, t1 = (cpu_seconds(process_tree(node.pid)),
                                          await asyncio.to_thread(stored), time.monotonic())
                frames = sum(c.received["video"].frames for c in clients)
                for c in clients:
                    await c.close()
        finally:
            node.terminate()
            node.wait(15)
    wall = t1 - t0
    cpu = 100 * sum(t - before.get(pid, 0.0) for pid, t in after.items()) / wall
    return {"recording": recording, "store": "s3" if s3 else "local", "consultations": n,
            "segment_s": args.segment_s,
            "window_s": round(wall, 2),
            "node_cpu_percent": round(cpu, 2),
            "node_cpu_percent_per_consultation": round(cpu / n, 2),
            "stored_mb_per_minute_per_consultation":
                round((bytes_after - bytes_before) / 1e6 / (wall / 60) / n, 2),
            "video_frames_received": frames}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    ice.use_host_addresses(["127.0.0.1"])
    clips = {"video": encode_vp8(640, 480, fps=30, seconds=4, bitrate=1_000_000),
             "audio": encode_opus(1.0)}
    relay = await run_once(args, False, clips)
    recorded = await run_once(args, True, clips)
    extra = (recorded["node_cpu_percent_per_consultation"]
             - relay["node_cpu_percent_per_consultation"])
    result: dict[str, Any] = {
        "benchmark": "recording", "relay_only": relay, "relay_and_recording": recorded,
        "recording_cpu_percent_per_consultation": round(extra, 2),
        "recording_mb_per_minute_per_consultation":
            recorded["stored_mb_per_minute_per_consultation"],
        "target_cpu_percent": TARGET_EXTRA_CPU, "within_target": extra <= TARGET_EXTRA_CPU}
    if args.s3:
        with moto_server() as s3:
            into_s3 = await run_once(args, True, clips, s3)
        extra_s3 = (into_s3["node_cpu_percent_per_consultation"]
                    - relay["node_cpu_percent_per_consultation"])
        result |= {
            "relay_and_recording_s3": into_s3,
            "recording_s3_cpu_percent_per_consultation": round(extra_s3, 2),
            "s3_minus_local_cpu_percent_per_consultation": round(extra_s3 - extra, 2),
            "recording_s3_within_target": extra_s3 <= TARGET_EXTRA_CPU}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--consultations", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--s3", action="store_true",
                        help="also record into an S3 bucket (moto's server, its own process)")
    parser.add_argument("--segment-s", type=float, default=60.0,
                        help="TC_RECORDING_SEGMENT_S: shorter, so that segments close (and, "
                        "with --s3, go up) inside the window")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
