"""Media relay benchmark: N consultations through a real node process, measured from outside.

    python -m bench.relay --consultations 1 4 8 [--seconds 20] [--bitrate 1000000] [--warmup 5]
        [--janus] [--recording off|on|both] [--lag-at 8]

For each N: a fresh node (`python -m server run`, SQLite in a temp dir, 127.0.0.1 only) with N
seeded consultations; 2N clients (guardian + doctor) in worker processes, each sending
pre-encoded 640x480 30 fps VP8 plus Opus and receiving the other side without decoding. After
the warm-up, one steady window is measured: the node's CPU (from /proc), the clients' received
frame rates and the end-to-end latency carried in each frame's trailer, and from inside the node
its own forwarding delay and event-loop lag (GET /metrics/timing). `--janus` runs the same load
through Janus's VideoRoom as well (bench/janus.py) and reports node ÷ Janus. One JSON document
goes to stdout, logs to stderr. See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import math
import multiprocessing
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Awaitable, Iterator
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import aiohttp
import aiortc

from bench import janus
from bench.client import CallClient
from bench.clip import Clip, encode_opus, encode_vp8
from bench.janus import JanusCall
from core import histogram
from core.auth import Role, Tokens
from core.config import EVENT_LOOPS, load_settings
from core.consent import CURRENT_VERSION as CONSENT_VERSION
from core.store import Database
from server.demo import seed

log = logging.getLogger("bench.relay")

ROOT = Path(__file__).resolve().parent.parent
TARGET_FPS = 25.0
TARGET_CPU_PER_CONSULTATION = 10.0
NODE_START_TIMEOUT_S = 30.0
NODE_STOP_TIMEOUT_S = 10.0
STEP_TIMEOUT_S = 20.0  # one signaling/ICE step of one client
TEARDOWN_TIMEOUT_S = 30.0
IDLE_SAMPLE_S = 3.0  # the node up, no clients yet
# The node samples its loop lag this often (TC_LOOP_WATCH_MS) in the runs of `--lag-at` N; in
# the others at its default. Measured on an idle node: 1.4 % of a core at 10 ms, 0.0–0.1 % at 500.
LOOP_SAMPLE_MS = 10
LOOP_DEFAULT_MS = 500
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1

Pair = tuple[str, str]  # (guardian token, doctor token)


# -- /proc ------------------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on; the name in parentheses may hold spaces."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (a node may run a process pool for face work)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each process (all its threads), in seconds."""
    result = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            result[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return result


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return total - idle, total


def rss_mb(pid: int) -> dict[str, float]:
    """Resident set size now and at its peak (VmHWM), in MB."""
    out = {}
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return {"now": out.get("VmRSS", 0.0), "peak": out.get("VmHWM", 0.0)}


@dataclass
class Sample:
    at: float
    node: dict[int, float]
    workers: dict[int, float]
    machine: tuple[float, float]

    @classmethod
    def take(cls, node_pid: int, worker_pids: list[int]) -> Sample:
        return cls(time.monotonic(), cpu_seconds(process_tree(node_pid)),
                   cpu_seconds(worker_pids), machine_busy())


def cpu_percent(before: dict[int, float], after: dict[int, float], wall: float) -> float:
    """CPU used between two samples, in percent of one core (processes that exited are lost)."""
    return 100 * sum(t - before.get(pid, 0.0) for pid, t in after.items()) / wall


# -- the load generator (worker processes) ----------------------------------------------------

@dataclass
class ClientStats:
    consultation: int
    role: str
    video_fps: float
    audio_pps: float
    keyframes: int
    latencies_ms: list[float]
    audio_latencies_ms: list[float]


@dataclass
class Call:
    """One consultation: the guardian's and the doctor's clients."""

    index: int
    guardian: CallClient
    doctor: CallClient

    @property
    def clients(self) -> dict[str, CallClient]:
        return {"guardian": self.guardian, "doctor": self.doctor}

    async def start(self) -> None:
        """Both sides join with media; the doctor accepts once the guardian is connected."""
        g, d, t = self.guardian, self.doctor, STEP_TIMEOUT_S
        await self._step("guardian join", g.connect(t))
        await self._step("guardian offer/answer", g.start_media(t))
        await self._step("doctor join", d.connect(t))
        await self._step("doctor offer/answer", d.start_media(t))
        await self._step("guardian ICE/DTLS", g.wait_connected(t))
        await self._step("doctor ICE/DTLS", d.wait_connected(t))
        await self._step("guardian consent", g.send({"type": "consent",
                                                     "version": CONSENT_VERSION}))
        await self._step("consent recorded", d.expect("consent", t, given=True))
        await self._step("doctor accept", d.send({"type": "accept", "id": "bench"}))
        await self._step("state active", wait_state(d, "active", t))

    async def _step(self, what: str, step: Awaitable[Any]) -> None:
        try:
            await step
        except Exception as exc:
            raise RuntimeError(f"consultation {self.index}, {what}: "
                               f"{type(exc).__name__}: {exc}") from exc

    async def end(self) -> None:
        """The doctor ends the consultation; the node then closes both sockets."""
        try:
            if self.doctor.ws is None or self.doctor.ws.closed:
                return  # never joined (a failed set-up) or already gone
            await self.doctor.send({"type": "end", "reason": "benchmark over"})
            async with asyncio.timeout(STEP_TIMEOUT_S):
                await asyncio.gather(*(c.expect("closed", STEP_TIMEOUT_S)
                                       for c in self.clients.values()))
        except Exception as exc:  # the node is stopped next anyway: report, do not fail the run
            log.warning("consultation %d did not end cleanly: %r", self.index, exc)
        finally:
            for client in self.clients.values():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), STEP_TIMEOUT_S)


async def wait_state(client: CallClient, state: str, timeout: float) -> None:
    """Wait for `state`; an `error` reply (e.g. a refused accept) fails at once with its text."""
    async with asyncio.timeout(timeout):
        while True:
            message = await client.inbox.get()
            if message["type"] == "state" and message.get("state") == state:
                return
            if message["type"] in ("error", "closed"):
                raise RuntimeError(f"waiting for state '{state}', the node sent {message}")


Counts = dict[str, tuple[int, int, int]]  # kind -> (frames, key frames, latencies recorded)


def counts(client: CallClient) -> Counts:
    return {kind: (r.frames, r.keyframes, len(r.latencies)) for kind, r in client.received.items()}


def window_stats(index: int, role: str, client: CallClient, a: Counts, b: Counts,
                 wall: float) -> ClientStats:
    """What `client` received between the snapshots `a` and `b`, taken `wall` seconds apart."""
    def latencies_ms(kind: str) -> list[float]:
        return [1000 * x for x in client.received[kind].latencies[a[kind][2]:b[kind][2]]]

    return ClientStats(index, role,
                       video_fps=(b["video"][0] - a["video"][0]) / wall,
                       audio_pps=(b["audio"][0] - a["audio"][0]) / wall,
                       keyframes=b["video"][1] - a["video"][1],
                       latencies_ms=latencies_ms("video"),
                       audio_latencies_ms=latencies_ms("audio"))


class Stopped(Exception):
    """The parent called the run off (it failed or was interrupted)."""


async def sleep_until(conn: Connection, at: float) -> None:
    """Sleep until `at` (monotonic, shared by all processes), unless the parent says stop."""
    if await asyncio.to_thread(conn.poll, max(0.0, at - time.monotonic())):
        raise Stopped(f"the parent sent {conn.recv()} during the window")


async def receive(conn: Connection, timeout: float) -> Any:
    if not await asyncio.to_thread(conn.poll, timeout):
        raise TimeoutError(f"no word from the benchmark's parent within {timeout:.0f} s")
    return conn.recv()


@dataclass(frozen=True)
class Target:
    """What the clients call: the node (`url` its base URL) or Janus (`url` its WebSocket API,
    `address` the one ICE address, `rec_dir` where it records, when it does)."""

    system: str  # "node" or "janus"
    url: str
    address: str = "127.0.0.1"
    rec_dir: str | None = None


def make_calls(target: Target, pairs: list[tuple[int, Pair]], clips: dict[str, Clip],
               session: aiohttp.ClientSession, timeout: float) -> list[Any]:
    if target.system == "janus":
        rec_dir = Path(target.rec_dir) if target.rec_dir else None
        return [JanusCall(i, target.url, clips, session, rec_dir is not None, rec_dir, timeout)
                for i, _ in pairs]
    return [Call(i, CallClient(target.url, g, clips, session),
                 CallClient(target.url, d, clips, session)) for i, (g, d) in pairs]


async def run_worker(conn: Connection, target: Target, pairs: list[tuple[int, Pair]],
                     clips: dict[str, Clip], setup_timeout: float) -> None:
    from signaling import ice  # the same setting as the server's: one host address

    ice.use_host_addresses([target.address])
    async with aiohttp.ClientSession() as session:
        calls = make_calls(target, pairs, clips, session, STEP_TIMEOUT_S)
        try:
            try:
                async with asyncio.timeout(setup_timeout):
                    await asyncio.gather(*(call.start() for call in calls))
            except TimeoutError:
                raise TimeoutError(f"consultations {[c.index for c in calls]} were not all "
                                   f"active within {setup_timeout:.0f} s") from None
            conn.send(("ready",))
            message = await receive(conn, setup_timeout * 4)
            if message[0] != "window":
                return
            t0, t1 = message[1], message[2]
            await sleep_until(conn, t0)
            at0, before = time.monotonic(), [[counts(c) for c in call.clients.values()]
                                             for call in calls]
            await sleep_until(conn, t1)
            at1, after = time.monotonic(), [[counts(c) for c in call.clients.values()]
                                            for call in calls]
            stats = [window_stats(call.index, role, client, a, b, at1 - at0)
                     for call, a_call, b_call in zip(calls, before, after, strict=True)
                     for (role, client), a, b in zip(call.clients.items(), a_call, b_call,
                                                     strict=True)]
            conn.send(("result", [asdict(s) for s in stats]))
        finally:
            await asyncio.gather(*(call.end() for call in calls))


def worker_main(conn: Connection, target: Target, pairs: list[tuple[int, Pair]],
                clips: dict[str, Clip], setup_timeout: float) -> None:
    """Entry point of a load-generator process: its own event loop, its own clients."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s worker-{os.getpid()} %(levelname)s %(message)s")
    for noisy in ("aiortc", "aioice", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(run_worker(conn, target, pairs, clips, setup_timeout))
    except Stopped as exc:
        log.info("stopping early: %s", exc)
    except BaseException as exc:
        traceback.print_exc(file=sys.stderr)
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


@dataclass
class Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    consultations: list[int]

    def stop(self) -> None:
        self.process.join(TEARDOWN_TIMEOUT_S)
        if self.process.is_alive():
            log.warning("worker %s still running; terminating it", self.process.pid)
            self.process.terminate()
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)


def collect(workers: list[Worker], expect: str, timeout: float) -> list[Any]:
    """The next message of each worker, which must be `expect`; fails on timeout or error."""
    pending = {w.conn: w for w in workers}
    payloads: list[Any] = []
    deadline = time.monotonic() + timeout
    while pending:
        remaining = deadline - time.monotonic()
        ready = wait(list(pending), max(0.0, remaining))
        if not ready:
            stuck = sorted(i for w in pending.values() for i in w.consultations)
            raise TimeoutError(f"no '{expect}' from the workers running consultations {stuck} "
                               f"within {timeout:.0f} s")
        for conn in ready:
            worker = pending.pop(conn)  # type: ignore[call-overload]
            try:
                message = conn.recv()  # type: ignore[union-attr]
            except EOFError:
                raise RuntimeError(f"worker {worker.process.pid} died (exit code "
                                   f"{worker.process.exitcode})") from None
            if message[0] != expect:
                raise RuntimeError(f"worker {worker.process.pid} (consultations "
                                   f"{worker.consultations}): {message[-1]}")
            payloads.extend(message[1:])
    return payloads


# -- the node ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed_consultations(data_dir: Path, database_url: str, secret: str, port: int,
                             count: int) -> list[Pair]:
    """Book `count` consultations in the node's database before it starts; tokens it accepts."""
    settings = load_settings(data_dir=data_dir, database_url=database_url, token_secret=secret,
                             host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}")
    tokens = Tokens(settings.token_secret, settings.token_ttl_s)
    db = await Database.open(database_url)
    try:
        pairs = []
        for _ in range(count):
            booking = await seed(db, settings, tokens)
            pairs.append((booking.guardian_link.split("#token=")[1],
                          booking.doctor_link.split("#token=")[1]))
        return pairs
    finally:
        await db.close()


# The relay alone: no face checks (the clips have no faces) and no recording. Other benchmarks
# turn on what they measure through `start_node(..., **settings)`.
MEDIA_ONLY = {"TC_IDENTITY_REQUIRED": "0", "TC_GUARDIAN_PRESENCE": "0", "TC_RECORDING": "0"}


def start_node(data_dir: Path, database_url: str | None, secret: str, port: int,
               **settings: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TC_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(TC_DATA_DIR=str(data_dir), TC_HOST="127.0.0.1", TC_PORT=str(port),
               TC_ICE_HOST_ADDRESSES="127.0.0.1", TC_TOKEN_SECRET=secret,
               TC_LOG_LEVEL="WARNING")
    env.update({**MEDIA_ONLY, **settings})
    if database_url:
        env["DATABASE_URL"] = database_url
    # The node's stdout ("listening on ...") goes to our stderr: stdout carries only the JSON.
    return subprocess.Popen([sys.executable, "-m", "server", "run"], cwd=ROOT, env=env,
                            stdout=sys.stderr, stdin=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent)


def _die_with_parent() -> None:
    """In the node's process: get SIGTERM if the benchmark dies, so no node is left behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_healthy(node: subprocess.Popen, base_url: str, timeout: float) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise RuntimeError(f"the node exited with code {node.returncode} before it was up")
        with contextlib.suppress(OSError, urllib.error.URLError):
            with opener.open(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise TimeoutError(f"the node did not answer {base_url}/healthz within {timeout:.0f} s")


def stop_node(node: subprocess.Popen) -> None:
    if node.poll() is not None:
        return
    node.send_signal(signal.SIGTERM)
    try:
        node.wait(NODE_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.warning("the node did not stop within %.0f s of SIGTERM; killing it",
                    NODE_STOP_TIMEOUT_S)
        node.kill()
        node.wait(5)


class NodeTiming:
    """Reads the node's own delay histograms (GET /metrics/timing, an ops token)."""

    def __init__(self, base_url: str, secret: str, lag_every_ms: int) -> None:
        self.url = f"{base_url}/metrics/timing"
        self.lag_every_ms = lag_every_ms
        token = Tokens(secret, 3600).issue(Role.OPS, "bench")
        self.headers = {"Authorization": f"Bearer {token}"}

    def read(self) -> dict[str, Any]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(self.url, headers=self.headers)
        with opener.open(request, timeout=10) as response:
            return json.loads(response.read())


def timing_summary(before: dict[str, Any], after: dict[str, Any],
                   lag_every_ms: int) -> dict[str, Any]:
    """The node's forwarding delay per kind and part, and its loop lag, in the window."""
    forwarding = {kind: {part: histogram.window(before["forwarding"][kind][part], counts)
                         for part, counts in parts.items()}
                  for kind, parts in after["forwarding"].items()}
    lag = histogram.window(before["loop_lag"], after["loop_lag"], quantiles=(50, 99))
    return {"node_forwarding_delay_ms": forwarding,
            "node_loop_lag_ms": {"every_ms": lag_every_ms, **lag}}


# -- one measurement --------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)], 1)


def setup_timeout(per_worker: int) -> float:
    return 30.0 + 5.0 * per_worker


@contextlib.contextmanager
def started_workers(target: Target, pairs: list[Pair], clips: dict[str, Clip],
                    per_worker: int) -> Iterator[list[Worker]]:
    context = multiprocessing.get_context("spawn")
    workers: list[Worker] = []
    try:
        for first in range(0, len(pairs), per_worker):
            chunk = list(enumerate(pairs))[first:first + per_worker]
            parent, child = context.Pipe()
            process = context.Process(
                target=worker_main, name=f"bench-worker-{first // per_worker}", daemon=True,
                args=(child, target, chunk, clips, setup_timeout(per_worker)))
            process.start()
            child.close()
            workers.append(Worker(process, parent, [i for i, _ in chunk]))
        yield workers
    finally:
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.conn.send(("stop",))
        for worker in workers:
            worker.stop()


def measure(n: int, clips: dict[str, Clip], args: argparse.Namespace, system: str = "node",
            recording: bool = False, event_loop: str | None = None) -> dict[str, Any]:
    """One run of `n` consultations through `system` ("node" or "janus"), recording or not; the
    node on `event_loop` (TC_EVENT_LOOP)."""
    with tempfile.TemporaryDirectory(prefix=f"tc-relay-bench-{system}-") as tmp:
        if system == "janus":
            with started_janus(Path(tmp), recording) as (server, target):
                entry = window(n, server, target, [(None, None)] * n, clips, args)
        else:
            lag_ms = LOOP_SAMPLE_MS if n in args.lag_at else LOOP_DEFAULT_MS
            event_loop = event_loop or EVENT_LOOPS[0]
            with started_node(Path(tmp), n, recording, lag_ms, event_loop) as (
                    server, target, pairs, probe):
                entry = {"event_loop": event_loop,
                         **window(n, server, target, pairs, clips, args, probe)}
        return {"system": system, "recording": recording, **entry}


@contextlib.contextmanager
def started_node(data_dir: Path, n: int, recording: bool, lag_ms: int, event_loop: str
                 ) -> Iterator[tuple[subprocess.Popen, Target, list[Pair], NodeTiming]]:
    """A fresh node with `n` booked consultations, up and idle-sampled."""
    database_url = f"sqlite+aiosqlite:///{data_dir}/teleconsult.db"
    secret = secrets.token_urlsafe(36)  # 48 characters
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    pairs = asyncio.run(seed_consultations(data_dir, database_url, secret, port, n))
    node = start_node(data_dir, database_url, secret, port, TC_RECORDING="1" if recording else "0",
                      TC_LOOP_WATCH_MS=str(lag_ms), TC_EVENT_LOOP=event_loop)
    try:
        wait_healthy(node, base_url, NODE_START_TIMEOUT_S)
        yield node, Target("node", base_url), pairs, NodeTiming(base_url, secret, lag_ms)
    finally:
        stop_node(node)


@contextlib.contextmanager
def started_janus(tmp: Path, recording: bool) -> Iterator[tuple[subprocess.Popen, Target]]:
    """A fresh Janus (VideoRoom, rooms created by the clients), recording into `tmp` or not."""
    address = janus.local_address()
    port = free_port()
    rtp = free_port()  # a start for its RTP port range; Janus binds what it finds free in it
    config = janus.write_config(tmp / "janus", port, (rtp, min(65535, rtp + 2000)), address)
    rec_dir = tmp / "recordings"
    rec_dir.mkdir()
    server = janus.start(config, _die_with_parent)
    try:
        url = f"ws://127.0.0.1:{port}/"
        asyncio.run(janus.wait_ready(server, url, NODE_START_TIMEOUT_S))
        yield server, Target("janus", url, address, str(rec_dir) if recording else None)
    finally:
        stop_node(server)


def window(n: int, server: subprocess.Popen, target: Target, pairs: list[Any],
           clips: dict[str, Clip], args: argparse.Namespace,
           probe: NodeTiming | None = None) -> dict[str, Any]:
    """Idle sample, 2n clients, warm-up, the measured window; the summary of it."""
    idle = Sample.take(server.pid, [])
    time.sleep(IDLE_SAMPLE_S)
    idle_cpu = cpu_percent(idle.node, Sample.take(server.pid, []).node, time.monotonic() - idle.at)
    log.info("N=%d: %s pid %d on %s; starting %d clients", n, target.system, server.pid,
             target.url, 2 * n)
    with started_workers(target, pairs, clips, args.per_worker) as workers:
        collect(workers, "ready", setup_timeout(args.per_worker) + 30)
        t0 = time.monotonic() + args.warmup
        t1 = t0 + args.seconds
        for worker in workers:
            worker.conn.send(("window", t0, t1))
        log.info("N=%d: all consultations active; warm-up %.0f s, window %.0f s",
                 n, args.warmup, args.seconds)
        pids = [w.process.pid for w in workers if w.process.pid is not None]
        time.sleep(max(0.0, t0 - time.monotonic()))
        timing_before = probe.read() if probe else None
        before = Sample.take(server.pid, pids)
        time.sleep(max(0.0, t1 - time.monotonic()))
        after = Sample.take(server.pid, pids)
        timing_after = probe.read() if probe else None
        rss = rss_mb(server.pid)
        clients = [ClientStats(**s) for batch in
                   collect(workers, "result", args.seconds + 60) for s in batch]
    entry = summarize(n, idle_cpu, before, after, rss, clients, len(workers), target.system)
    if timing_before is not None and timing_after is not None:
        entry.update(timing_summary(timing_before, timing_after, probe.lag_every_ms))
    return entry


def summarize(n: int, idle_cpu: float, before: Sample, after: Sample, rss: dict[str, float],
              clients: list[ClientStats], workers: int, system: str = "node") -> dict[str, Any]:
    """One window's figures; the server's fields are named after it (`node_…`, `janus_…`)."""
    wall = after.at - before.at
    node_cpu = cpu_percent(before.node, after.node, wall)
    per_worker = [100 * (after.workers[p] - before.workers.get(p, 0.0)) / wall
                  for p in after.workers]
    busy = (after.machine[0] - before.machine[0]) / max(1, after.machine[1] - before.machine[1])
    fps = [c.video_fps for c in clients]
    latencies = [x for c in clients for x in c.latencies_ms]
    audio_latencies = [x for c in clients for x in c.audio_latencies_ms]
    result = {
        "consultations": n,
        "window_s": round(wall, 2),
        f"{system}_cpu_percent_of_core": round(node_cpu, 1),
        f"{system}_cpu_per_consultation_percent": round(node_cpu / n, 1),
        f"{system}_idle_cpu_percent": round(idle_cpu, 1),
        "min_client_video_fps": round(min(fps), 1),
        "mean_client_video_fps": round(statistics.fmean(fps), 1),
        "min_client_audio_pps": round(min(c.audio_pps for c in clients), 1),
        "mean_client_audio_pps": round(statistics.fmean(c.audio_pps for c in clients), 1),
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "max": percentile(latencies, 100), "frames": len(latencies)},
        "audio_latency_ms": {"p50": percentile(audio_latencies, 50),
                             "p95": percentile(audio_latencies, 95),
                             "max": percentile(audio_latencies, 100)},
        "min_client_keyframes": min(c.keyframes for c in clients),
        "loadgen_workers": workers,
        "loadgen_cpu_percent": round(sum(per_worker), 1),
        "loadgen_cpu_percent_max_worker": round(max(per_worker), 1),
        "machine_cpu_busy_percent": round(100 * busy, 1),
        f"{system}_rss_mb": rss["now"],
        f"{system}_rss_peak_mb": rss["peak"],
    }
    result["pass"] = (result["min_client_video_fps"] >= TARGET_FPS
                      and result[f"{system}_cpu_per_consultation_percent"]
                      <= TARGET_CPU_PER_CONSULTATION)
    return result


def compare(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Node and Janus side by side per N and recording mode, and node ÷ Janus."""
    by = {(r["consultations"], r["recording"], r["system"], r.get("event_loop")): r
          for r in results}
    rows = []
    for (n, recording, system, event_loop), node in by.items():
        other = by.get((n, recording, "janus", None))
        if system != "node" or other is None:
            continue
        row: dict[str, Any] = {"consultations": n, "recording": recording,
                               "event_loop": event_loop}
        if "error" in node or "error" in other:
            row["error"] = node.get("error") or other.get("error")
            rows.append(row)
            continue
        node_cpu = node["node_cpu_per_consultation_percent"]
        janus_cpu = other["janus_cpu_per_consultation_percent"]
        row.update({
            "node_cpu_per_consultation_percent": node_cpu,
            "janus_cpu_per_consultation_percent": janus_cpu,
            "cpu_ratio_node_to_janus": round(node_cpu / janus_cpu, 1) if janus_cpu else None,
            "node_min_client_video_fps": node["min_client_video_fps"],
            "janus_min_client_video_fps": other["min_client_video_fps"],
            "node_video_latency_p50_ms": node["latency_ms"]["p50"],
            "janus_video_latency_p50_ms": other["latency_ms"]["p50"],
        })
        rows.append(row)
    return rows


# -- command line -----------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "aiortc": aiortc.__version__, "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--consultations", type=int, nargs="+", default=[1, 4, 8],
                        help="numbers of simultaneous consultations, one node run each")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds between all consultations active and the window")
    parser.add_argument("--bitrate", type=int, default=1_000_000, help="VP8 bit rate, bit/s")
    parser.add_argument("--per-worker", type=int, default=4,
                        help="consultations per load-generator process")
    parser.add_argument("--janus", action="store_true",
                        help="also run each N through Janus's VideoRoom (same clients, same "
                             "load) and report node ÷ Janus")
    parser.add_argument("--recording", choices=("off", "on", "both"), default="off",
                        help="relay only, relay + recording (node: TC_RECORDING=1; Janus: "
                             "VideoRoom `record`), or both, one after the other")
    parser.add_argument("--lag-at", type=int, nargs="*", default=[8],
                        help=f"N whose node runs sample the loop lag every {LOOP_SAMPLE_MS} ms "
                             f"(the others every {LOOP_DEFAULT_MS} ms: 10 ms costs the node "
                             "~1.4 %% of a core)")
    parser.add_argument("--event-loop", nargs="+", choices=EVENT_LOOPS, default=["uvloop"],
                        help="the node's event loop (TC_EVENT_LOOP); with several, the node "
                             "runs once on each, one after the other")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if min(args.consultations) < 1 or args.per_worker < 1 or args.seconds <= 0:
        parser.error("--consultations, --per-worker and --seconds must be positive")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema set-up before each node

    systems: list[tuple[str, str | None]] = [("node", loop) for loop in args.event_loop]
    if args.janus:
        systems.append(("janus", None))
    recordings = {"off": [False], "on": [True], "both": [False, True]}[args.recording]
    if args.janus:
        janus.ensure_installed()
    runs = [(n, recording, system, loop) for n in args.consultations for recording in recordings
            for system, loop in systems]
    per_run = (NODE_START_TIMEOUT_S + IDLE_SAMPLE_S + setup_timeout(args.per_worker) + 30
               + args.warmup + args.seconds + 60 + 2 * TEARDOWN_TIMEOUT_S + NODE_STOP_TIMEOUT_S
               + 10)
    budget = math.ceil(120 + per_run * len(runs))

    def overrun(*_: object) -> None:
        raise TimeoutError(f"the whole benchmark ran over its {budget} s budget")

    signal.signal(signal.SIGALRM, overrun)
    # SIGTERM unwinds like Ctrl-C: workers and node stopped, temp dirs removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(budget)

    started = time.monotonic()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    log.info("encoding the clips (640x480 30 fps VP8 at %d bit/s, Opus)", args.bitrate)
    clips = {"video": encode_vp8(640, 480, 30, seconds=4, bitrate=args.bitrate),
             "audio": encode_opus(1.0)}
    results: list[dict[str, Any]] = []
    for n, recording, system, loop in runs:
        try:
            results.append(measure(n, clips, args, system, recording, loop))
        except Exception as exc:
            log.error("N=%d %s (recording %s) failed: %s", n, system, recording, exc)
            results.append({"system": system, "recording": recording, "consultations": n,
                            "error": f"{type(exc).__name__}: {exc}", "pass": False})
        log.info("N=%d: %s", n, json.dumps(results[-1]))
    signal.alarm(0)

    report = {
        "machine": machine(),
        "bitrate": args.bitrate,
        "video": "VP8 640x480 30 fps, pre-encoded, key frame every second",
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        "results": results,
        **({"node_vs_janus": compare(results)} if args.janus else {}),
        "loadavg_before": load_before,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
        "targets": {"client_video_fps_min": TARGET_FPS,
                    "node_cpu_per_consultation_percent_max": TARGET_CPU_PER_CONSULTATION},
        "pass": all(r["pass"] for r in results if r["system"] == "node"),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if any("error" in r for r in results):
        return 2
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
