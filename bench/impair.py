"""Impairment harness: two real Chromiums on the real call page through the node, on a shaped
link, side by side with the same two Chromiums calling each other directly.

    python -m bench.impair [--profiles A B C A-guardian clean] [--seconds 60] [--warmup 10]
                           [--out FILE]

Must run as root; it re-executes itself under `unshare -n`, so nothing it does is visible
outside. Namespaces (netlab.Lab): "node" (the node, or the direct call's page server),
"doctor" and "guardian" (one headless Chromium each, 640x480 15 fps fake camera from a real
photo), joined by veth pairs to a "router" where the profile's impairment is applied
(netlab.Shaper). For each profile, one run through the node ("relay") and one direct; each run:
join, warm-up, a measured window reading getStats on both pages every `SAMPLE_S`. One JSON
document on stdout (and --out), logs on stderr. See bench/README.md for every field.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import webrtc_stats as ws
from bench.direct import DirectSignaling
from bench.relay import machine_busy, process_tree, rss_mb, seed_consultations
from core.auth import Role, Tokens
from netlab import Impairment, Lab, Namespace, Shaper
from netlab.namespace import die_with_parent

log = logging.getLogger("bench.impair")

ROOT = Path(__file__).resolve().parent.parent
NODE_PORT, DIRECT_PORT = 8080, 8090
SAMPLE_S = 0.5
NODE_VIEW_S = 1.0
CONNECT_TIMEOUT_S = 45.0  # join to video decoded on both pages
NODE_START_TIMEOUT_S = 30.0
EVALUATE_TIMEOUT_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
RUN_OVERHEAD_S = 120.0  # per run, on top of warm-up and window: launch, join, teardown


@dataclass(frozen=True)
class Profile:
    name: str
    leaf: str  # whose link is shaped
    direction: str  # "down": towards the leaf, "up": from it
    impairment: Impairment | None  # None: no shaping
    drop_to_kbit: float | None = None  # the rate changes to this ...
    drop_after_s: float = 20.0  # ... this long into the window
    what: str = ""


PROFILES = {p.name: p for p in (
    Profile("A", "doctor", "down", Impairment(500, 40, 0.01),
            what="doctor's downlink 500 kbit/s, 40 ms, 1 % loss"),
    Profile("B", "doctor", "down", Impairment(300, 80, 0.03),
            what="doctor's downlink 300 kbit/s, 80 ms, 3 % loss"),
    Profile("C", "doctor", "down", Impairment(2000), drop_to_kbit=400,
            what="doctor's downlink 2 Mbit/s, 400 kbit/s from 20 s into the window"),
    Profile("A-guardian", "guardian", "up", Impairment(500, 40, 0.01),
            what="guardian's uplink 500 kbit/s, 40 ms, 1 % loss"),
    Profile("clean", "doctor", "down", None, what="no shaping"),
)}


# -- processes and CPU in a namespace ---------------------------------------------------------

def namespace_pids(ns: Namespace) -> list[int]:
    """Every process whose network namespace is `ns` (a Chromium and all its helpers)."""
    target, pids = os.readlink(ns.path), []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != ns.pid:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry.name}/ns/net") == target:
                    pids.append(int(entry.name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{pid}/stat").read_text()
            fields = raw[raw.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


@dataclass
class Load:
    """CPU seconds per namespace and the machine's busy jiffies, at one moment."""

    at: float
    cpu: dict[str, float]
    machine: tuple[float, float]

    @classmethod
    def take(cls, lab: Lab, node_pid: int | None) -> Load:
        cpu = {name: cpu_seconds(namespace_pids(leaf.ns)) for name, leaf in lab.leaves.items()}
        cpu["router"] = cpu_seconds(namespace_pids(lab.router))
        if node_pid is not None:
            cpu["node_process"] = cpu_seconds(process_tree(node_pid))
        return cls(time.monotonic(), cpu, machine_busy())

    def percent_since(self, before: Load) -> dict[str, Any]:
        wall = self.at - before.at
        busy = ((self.machine[0] - before.machine[0])
                / max(1, self.machine[1] - before.machine[1]))
        return {"machine_busy_percent": round(100 * busy, 1),
                "cpu_percent_of_core": {k: round(100 * (v - before.cpu.get(k, 0.0)) / wall, 1)
                                        for k, v in self.cpu.items()}}


# -- the node ---------------------------------------------------------------------------------

class NodeRun:
    """A fresh node process in the node namespace with one booked demo consultation."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab, self.workdir = lab, workdir
        self.address = lab["node"].address
        self.proc: subprocess.Popen | None = None
        self.links: dict[str, str] = {}
        self.ops_token = ""

    async def start(self) -> None:
        data = self.workdir / "node-data"
        shutil.rmtree(data, ignore_errors=True)  # a fresh database every run
        data.mkdir(parents=True)
        secret = secrets.token_urlsafe(36)
        pairs = await seed_consultations(data, f"sqlite+aiosqlite:///{data}/teleconsult.db",
                                         secret, NODE_PORT, 1)
        guardian, doctor = pairs[0]
        self.ops_token = Tokens(secret, 3600).issue(Role.OPS, "bench")
        base = f"http://{self.address}:{NODE_PORT}/call#token="
        self.links = {"guardian": base + guardian, "doctor": base + doctor}
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TC_") and k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(TC_DATA_DIR=str(data), TC_HOST=self.address, TC_PORT=str(NODE_PORT),
                   TC_ICE_HOST_ADDRESSES=self.address, TC_TOKEN_SECRET=secret,
                   TC_IDENTITY_REQUIRED="0", TC_GUARDIAN_PRESENCE="0",
                   TC_LOG_LEVEL=os.environ.get("BENCH_NODE_LOG_LEVEL", "WARNING"))
        with (self.workdir / "node.log").open("ab") as out:
            # nsenter execs the node: self.proc.pid is the node's own pid.
            self.proc = self.lab["node"].ns.popen([sys.executable, "-m", "server", "run"],
                                                  cwd=ROOT, env=env, stdout=out,
                                                  stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL)
        url = f"http://{self.address}:{NODE_PORT}/healthz"
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while not await asyncio.to_thread(self.lab["node"].ns.call, lambda: _answers(url)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not come up (exit code {self.proc.poll()}); "
                                   f"see {self.workdir / 'node.log'}")
            await asyncio.sleep(0.2)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def bandwidth(self, role: str) -> dict[str, Any] | None:
        """What the node's live statistics say of `role`'s link (signaling/call_stats.py's
        `bandwidth`, and the video frames it dropped for them, `dropped`), from the ops API;
        None if it has none yet."""
        url = f"http://{self.address}:{NODE_PORT}/api/ops/live"

        def fetch() -> dict[str, Any]:
            request = urllib.request.Request(
                url, headers={"Authorization": f"Bearer {self.ops_token}"})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(request, timeout=2) as response:
                return json.load(response)

        with contextlib.suppress(OSError, ValueError):
            live = await asyncio.to_thread(self.lab["node"].ns.call, fetch)
            for consultation in live["consultations"].values():
                stats = consultation.get("participants", {}).get(role, {}).get("stats", {})
                if "bandwidth" in stats:
                    dropped = stats.get("sent", {}).get("video", {}).get("dropped")
                    return {**stats["bandwidth"], "dropped": dropped}
        return None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# -- the pages --------------------------------------------------------------------------------

async def join_relay(guardian: Any, doctor: Any, links: dict[str, str]) -> None:
    """As a guardian and a doctor would: consent, join, the doctor accepts; the call is active."""
    from bench.chromium import wait_for_body_data

    await guardian.goto(links["guardian"])
    await doctor.goto(links["doctor"])
    await guardian.check("#consent-check")
    await guardian.click("#join-btn")
    await wait_for_body_data(guardian, "state", "waiting", CONNECT_TIMEOUT_S)
    await doctor.click("#join-btn")
    await wait_for_body_data(doctor, "consent", "given", CONNECT_TIMEOUT_S)
    await wait_for_body_data(doctor, "peer", "connected", CONNECT_TIMEOUT_S)
    await doctor.click("#accept-btn")
    await wait_for_body_data(doctor, "state", "active", CONNECT_TIMEOUT_S)
    await wait_for_body_data(guardian, "state", "active", CONNECT_TIMEOUT_S)


async def join_direct(guardian: Any, doctor: Any, address: str) -> None:
    from bench.chromium import wait_for_body_data

    base = f"http://{address}:{DIRECT_PORT}/direct.html?role="
    await doctor.goto(base + "doctor")
    await wait_for_body_data(doctor, "phase", "incall", CONNECT_TIMEOUT_S)
    await guardian.goto(base + "guardian")
    for page in (guardian, doctor):
        await wait_for_body_data(page, "media", "connected", CONNECT_TIMEOUT_S)


class Sampler:
    """getStats of both pages every SAMPLE_S, from the moment the pages join."""

    def __init__(self, pages: dict[str, Any]) -> None:
        self.pages = pages
        self.samples: dict[str, list[ws.Sample]] = {role: [] for role in pages}
        self.task: asyncio.Task | None = None

    async def _sample(self, role: str) -> None:
        with contextlib.suppress(Exception):  # a slow or closing page: this sample is missing
            sample = await asyncio.wait_for(self.pages[role].evaluate(ws.SAMPLE_JS),
                                            EVALUATE_TIMEOUT_S)
            sample["at"] = time.monotonic()
            self.samples[role].append(sample)

    async def _loop(self) -> None:
        next_at = time.monotonic()
        while True:
            await asyncio.gather(*(self._sample(role) for role in self.pages))
            next_at += SAMPLE_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def until_video(self, timeout: float) -> float:
        """Wait until both pages decode the other's video; the time it happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s and (ws.value(s[-1], "vin.framesDecoded") or 0) > 0
                   for s in self.samples.values()):
                return time.monotonic()
            await asyncio.sleep(SAMPLE_S)
        last = {role: s[-1] if s else None for role, s in self.samples.items()}
        raise TimeoutError(f"no video decoded on both pages within {timeout:.0f} s: {last}")


def incidents(samples: list[ws.Sample], role: str, mode: str) -> list[dict[str, Any]]:
    """Every sample where the page was not plainly in the call (a drop, a reconnect)."""
    out, pcs = [], None
    for s in samples:
        bad = []
        if s.get("connection") not in ("connected", None):
            bad.append(f"connection={s.get('connection')}")
        if mode == "relay" and (s.get("phase"), s.get("peer")) != ("incall", "connected"):
            bad.append(f"phase={s.get('phase')} peer={s.get('peer')}")
        if pcs is not None and s["pcs"] != pcs:
            bad.append(f"new peer connection ({s['pcs']})")
        pcs = s["pcs"]
        if bad:
            out.append({"at_s": s["at"], "page": role, "what": ", ".join(bad)})
    return out


# -- one run ----------------------------------------------------------------------------------

@dataclass
class Clips:
    doctor: Path
    guardian: Path


def chromium_extra_args(address: str) -> list[str]:
    return [f"--unsafely-treat-insecure-origin-as-secure="
            f"http://{address}:{NODE_PORT},http://{address}:{DIRECT_PORT}",
            "--disable-features=WebRtcHideLocalIpsWithMdns"]


async def run_one(lab: Lab, profile: Profile, mode: str, clips: Clips, args: argparse.Namespace,
                  workdir: Path) -> dict[str, Any]:
    from bench.chromium import launch_chromium

    shapers: list[Shaper] = []
    node: NodeRun | None = None
    direct: DirectSignaling | None = None
    sampler: Sampler | None = None
    views: asyncio.Task | None = None
    views_seen: list[tuple[float, dict[str, Any]]] = []  # (when, the node's view of the doctor)
    rss_seen: list[tuple[float, float]] = []  # (when, the node's RSS in MB)
    address = lab["node"].address
    result: dict[str, Any] = {"mode": mode}
    try:
        if profile.impairment is not None:
            shapers.append(await asyncio.to_thread(
                Shaper(lab, profile.leaf, profile.direction, profile.impairment).start))
        if mode == "relay":
            node = NodeRun(lab, workdir)
            await node.start()
        else:
            direct = DirectSignaling()
            sock = lab["node"].ns.call(lambda: _listening(address, DIRECT_PORT))
            await direct.start(sock)
        extra = chromium_extra_args(address)
        async with contextlib.AsyncExitStack() as stack:
            browsers = {
                role: await stack.enter_async_context(launch_chromium(
                    getattr(clips, role), workdir / role, prefix=lab[role].ns.prefix,
                    extra_args=extra))
                for role in ("guardian", "doctor")}
            pages = {}
            for role, browser in browsers.items():
                await browser.context.add_init_script(ws.RECORD_PCS)
                pages[role] = await browser.new_page(role)
            sampler = Sampler(pages)
            sampler.start()
            if node is not None:
                views = asyncio.create_task(node_views(node, "doctor", views_seen, rss_seen))
            joined = time.monotonic()
            if node is not None:
                await join_relay(pages["guardian"], pages["doctor"], node.links)
            else:
                await join_direct(pages["guardian"], pages["doctor"], address)
            video = await sampler.until_video(CONNECT_TIMEOUT_S)
            result["join_to_video_s"] = round(video - joined, 1)
            t0 = video + args.warmup
            t1 = t0 + args.seconds
            await asyncio.sleep(max(0.0, t0 - time.monotonic()))
            load0 = Load.take(lab, node.pid if node else None)
            rss0 = rss_mb(node.pid) if node and node.pid else None
            drop_at = None
            if profile.drop_to_kbit is not None and shapers:
                drop_at = t0 + min(profile.drop_after_s, args.seconds / 2)
                await asyncio.sleep(max(0.0, drop_at - time.monotonic()))
                await asyncio.to_thread(shapers[0].set, rate_kbit=profile.drop_to_kbit)
                log.info("%s/%s: rate now %.0f kbit/s", profile.name, mode, profile.drop_to_kbit)
            await asyncio.sleep(max(0.0, t1 - time.monotonic()))
            load1 = Load.take(lab, node.pid if node else None)
            rss1 = rss_mb(node.pid) if node and node.pid else None
            await sampler.stop()
            result.update(summarize(profile, mode, sampler, joined, video, t0, t1, drop_at))
            if node is not None:
                result["node_view_of_doctor"] = node_view_summary(views_seen, t0, t1)
            result["load"] = load1.percent_since(load0)
            if rss0 and rss1:
                result["node_rss_mb"] = {"start": rss0["now"], "end": rss1["now"],
                                         "peak": rss1["peak"],
                                         "growth_mb_per_min": round(
                                             (rss1["now"] - rss0["now"]) * 60 / (t1 - t0), 2),
                                         **rss_second_half(rss_seen, t0, t1)}
    except Exception as exc:
        log.exception("%s/%s failed", profile.name, mode)
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if sampler is not None:
            await sampler.stop()
        if views is not None:
            views.cancel()
        if node is not None:
            node.stop()
            result["node_log_tail"] = _tail(workdir / "node.log")
        if direct is not None:
            await direct.stop()
        for shaper in shapers:
            await asyncio.to_thread(shaper.stop)
            result.setdefault("forwarder", {"priority": shaper.ready.get("priority"),
                                            **(shaper.final or {})})
    return result


async def node_views(node: NodeRun, role: str, seen: list[tuple[float, dict[str, Any]]],
                     rss: list[tuple[float, float]]) -> None:
    """The node's live view of `role`'s link (its statistics refresh every few seconds) and its
    RSS, every NODE_VIEW_S."""
    while True:
        view = await node.bandwidth(role)
        if view is not None:
            seen.append((time.monotonic(), view))
        if node.pid is not None:
            rss.append((time.monotonic(), rss_mb(node.pid)["now"]))
        await asyncio.sleep(NODE_VIEW_S)


def rss_second_half(rss: list[tuple[float, float]], t0: float, t1: float) -> dict[str, Any]:
    """The RSS slope over the window's second half, by least squares over the samples: a
    fresh process grows while it warms up (allocator arenas, caches), a leak keeps growing."""
    half = [(at, mb) for at, mb in rss if (t0 + t1) / 2 <= at <= t1]
    if len(half) < 3:
        return {}
    mean_t = sum(at for at, _ in half) / len(half)
    mean_mb = sum(mb for _, mb in half) / len(half)
    spread = sum((at - mean_t) ** 2 for at, _ in half)
    slope = sum((at - mean_t) * (mb - mean_mb) for at, mb in half) / spread if spread else 0.0
    return {"second_half_growth_mb_per_min": round(slope * 60, 2),
            "minute_by_minute": [mb for at, mb in rss if t0 <= at <= t1][::round(60 / NODE_VIEW_S)]}


def node_view_summary(seen: list[tuple[float, dict[str, Any]]], t0: float,
                      t1: float) -> dict[str, Any]:
    """In the window: the video frames the node dropped for the doctor (its send budget, or a
    queue standing on the doctor's downlink), the queue it saw there (from the doctor's
    transport-wide feedback; none without it) and its downlink estimate."""
    window = [view for at, view in seen if t0 <= at <= t1]
    queues = sorted(v["queue_ms"] for v in window if v.get("queue_ms") is not None)
    estimates = [v["downlink_kbps"] for v in window if v.get("downlink_kbps") is not None]
    dropped = [v["dropped"] for v in window if v.get("dropped") is not None]
    return {"frames_dropped": dropped[-1] - dropped[0] if dropped else None,
            "readings": len(window), "with_queue": len(queues),
            "queue_ms_median": queues[len(queues) // 2] if queues else None,
            "queue_ms_max": queues[-1] if queues else None,
            "downlink_kbps_min": min(estimates, default=None),
            "downlink_kbps_max": max(estimates, default=None)}


def _listening(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(16)
    sock.setblocking(False)
    return sock


def _tail(path: Path, n: int = 5) -> list[str]:
    """The node log's last error-ish lines, so a broken run says why."""
    with contextlib.suppress(OSError):
        lines = path.read_text(errors="replace").splitlines()
        return [line[:300] for line in lines if "ERROR" in line or "Traceback" in line][-n:]
    return []


def summarize(profile: Profile, mode: str, sampler: Sampler, joined: float, video: float,
              t0: float, t1: float, drop_at: float | None) -> dict[str, Any]:
    d_all, g_all = sampler.samples["doctor"], sampler.samples["guardian"]
    d, g = ws.Window.of(d_all, t0, t1), ws.Window.of(g_all, t0, t1)
    out: dict[str, Any] = {
        "window_s": round(t1 - t0, 1),
        "samples": {"doctor": len(d.samples), "guardian": len(g.samples)},
        "doctor_receives": d.receiving(),
        "guardian_receives": g.receiving(),
        "guardian_sends": g.sending(),
        "doctor_sends": d.sending(),
    }
    found = [i for role, s in (("doctor", d.samples), ("guardian", g.samples))
             for i in incidents(s, role, mode)]
    for i in found:
        i["at_s"] = round(i["at_s"] - t0, 1)
    out["dropped"] = bool(found)
    out["incidents"] = found[:20]
    sent = ws.rates(g_all, "vout.bytesSent", 8 / 1000)  # guardian's video kbit/s over time
    target = [(s["at"], v / 1000) for s in g_all
              if (v := ws.value(s, "vout.targetBitrate")) is not None]
    first_frame = next((s["at"] for s in g_all if (ws.value(s, "vout.framesEncoded") or 0) > 0),
                       None)
    if first_frame is not None:
        reached = ws.first_time(sent, lambda v: v >= 1000, first_frame)
        out["guardian_first_frame_s"] = round(first_frame - joined, 1)
        out["guardian_to_1mbps_s"] = None if reached is None else round(reached - first_frame, 1)
    if drop_at is not None and profile.drop_to_kbit is not None:
        new = profile.drop_to_kbit
        under = ws.first_time(sent, lambda v: v <= new, drop_at)
        target_under = ws.first_time(target, lambda v: v <= new, drop_at)
        before = ws.Window.of(g_all, drop_at - 5, drop_at).sending()["video_kbps"]
        out["drop"] = {"at_s": round(drop_at - t0, 1), "to_kbit": new,
                       "guardian_sending_before_kbps": before,
                       "guardian_sending_under_s": None if under is None
                       else round(under - drop_at, 1),
                       "guardian_target_under_s": None if target_under is None
                       else round(target_under - drop_at, 1),
                       "doctor_receives_after": ws.Window.of(d_all, drop_at, t1).receiving()}
    out["timeline"] = timeline(d_all, g_all, t0, t1)
    return out


def timeline(d_all: list[ws.Sample], g_all: list[ws.Sample], t0: float,
             t1: float, step: float = 2.0) -> list[list[float | None]]:
    """Every `step` s of the window: [t, guardian sends kbit/s, its target, doctor receives
    kbit/s, doctor fps, doctor's round trip ms]."""
    rows = []
    t = t0
    while t + step <= t1 + 1e-6:
        d, g = ws.Window.of(d_all, t, t + step), ws.Window.of(g_all, t, t + step)
        gs, dr = g.sending(), d.receiving()
        rows.append([round(t - t0, 1), gs["video_kbps"], gs["target_kbps_median"],
                     dr["video_kbps"], dr["fps"], dr["rtt_ms_median"]])
        t += step
    return rows


def compare(relay: dict[str, Any], direct: dict[str, Any]) -> dict[str, Any]:
    """Through the node against direct: the doctor's and the guardian's side."""
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    def diff(a: float | None, b: float | None) -> float | None:
        return round(a - b, 1) if a is not None and b is not None else None

    out = {}
    for side in ("doctor_receives", "guardian_receives"):
        r, d = relay.get(side), direct.get(side)
        if not r or not d:
            continue
        out[side] = {"fps_ratio": ratio(r["fps"], d["fps"]),
                     "freeze_s_diff": diff(r["freeze_s"], d["freeze_s"]),
                     "audio_concealed_percent_diff": diff(r["audio_concealed_percent"],
                                                          d["audio_concealed_percent"]),
                     "rtt_ms_ratio": ratio(r["rtt_ms_median"], d["rtt_ms_median"])}
    return out


# -- the whole run ----------------------------------------------------------------------------

def make_clips(workdir: Path) -> Clips:
    from bench.faces import ADULT_A, CHILD_A, OBAMA, make_y4m, side_by_side

    return Clips(doctor=make_y4m(workdir / "doctor.y4m", OBAMA, seconds=12),
                 guardian=make_y4m(workdir / "guardian.y4m", side_by_side(ADULT_A, CHILD_A),
                                   seconds=12))


def forwarder_overhead(lab: Lab, rounds: int = 500) -> dict[str, Any]:
    """UDP round trip node <-> doctor, plain and through an unimpaired forwarder (both ways)."""
    from netlab.probe import udp_rtt_ms

    udp_rtt_ms(lab, "doctor", "node", 20)  # warm up (ARP, caches)
    plain = udp_rtt_ms(lab, "doctor", "node", rounds)
    with Shaper(lab, "doctor", "down", Impairment()), Shaper(lab, "doctor", "up", Impairment()):
        shaped = udp_rtt_ms(lab, "doctor", "node", rounds)
    return {"plain_rtt_ms": plain, "through_forwarder_both_ways_rtt_ms": shaped}


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tc-impair-") as tmp, \
            Lab(["node", "doctor", "guardian"]) as lab:
        workdir = Path(args.artifacts or tmp)
        log.info("lab up; clips into %s", workdir)
        clips = await asyncio.to_thread(make_clips, workdir)
        overhead = await asyncio.to_thread(forwarder_overhead, lab)
        log.info("forwarder overhead: %s", overhead)
        profiles: dict[str, Any] = {}
        for name in args.profiles:
            profile = PROFILES[name]
            runs = {}
            for mode in ("relay", "direct"):
                log.info("profile %s (%s), %s", name, profile.what, mode)
                runs[mode] = await run_one(lab, profile, mode, clips, args,
                                           workdir / f"{name}-{mode}")
                log.info("profile %s %s: %s", name, mode, json.dumps(
                    {k: v for k, v in runs[mode].items() if k != "timeline"}))
            profiles[name] = {"what": profile.what,
                              "shaping": None if profile.impairment is None else {
                                  "leaf": profile.leaf, "direction": profile.direction,
                                  **asdict(profile.impairment),
                                  "drop_to_kbit": profile.drop_to_kbit},
                              **runs, "relay_vs_direct": compare(runs["relay"], runs["direct"])}
        return {"forwarder_overhead": overhead, "profiles": profiles}


def machine() -> dict[str, Any]:
    import aiortc

    chromium = subprocess.run(["/usr/lib/chromium/chromium", "--version"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "aiortc": aiortc.__version__, "chromium": chromium, "platform": platform.platform()}


def reexec_in_namespace(argv: list[str]) -> None:
    """Run the harness itself in a private network namespace (nothing leaks out, no clashes)."""
    if os.geteuid() != 0:
        sys.exit("bench.impair needs root (network namespaces, veth, tc, TUN)")
    command = ["unshare", "--net", "--", sys.executable, "-m", "bench.impair", "--in-namespace",
               *argv]
    proc = subprocess.Popen(command, preexec_fn=die_with_parent)
    # Ctrl-C reaches the child from the terminal; SIGTERM to this process is passed on. Either
    # way the child unwinds (pages, node, forwarders, namespaces) and this one waits for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    sys.exit(proc.wait())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.impair", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="seconds from video on both pages to the window")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--artifacts", type=Path,
                        help="keep clips, node logs, console logs here (default: a temp dir)")
    parser.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be positive, --warmup not negative")
    if not args.in_namespace:
        reexec_in_namespace(argv)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)

    runs = 2 * len(args.profiles)
    budget = math.ceil(120 + runs * (RUN_OVERHEAD_S + args.warmup + args.seconds))

    def overrun(*_: object) -> None:
        raise TimeoutError(f"the harness ran over its {budget} s budget")

    signal.signal(signal.SIGALRM, overrun)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: pages, node, namespaces
    signal.alarm(budget)
    started = time.monotonic()
    result = asyncio.run(run_all(args))
    signal.alarm(0)
    report = {"machine": machine(), "warmup_s": args.warmup, "seconds": args.seconds,
              "video": "Chromium fake camera, 640x480 15 fps y4m from real photos",
              **result, "elapsed_s": round(time.monotonic() - started, 1)}
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    failed = any("error" in p.get(m, {}) for p in result["profiles"].values()
                 for m in ("relay", "direct"))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
