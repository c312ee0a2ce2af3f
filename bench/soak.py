"""Soak: does the node give back what hostile or ordinary churn takes? (issue 17)

    python -m bench.soak [--cycles 2000] [--idle-sockets 200] [--slow-loris 8] [--out soak.json]

A fresh node process (`python -m server run`, SQLite in a temp dir, 127.0.0.1 only, as
bench.relay starts it) hosts one two-party call (aiortc clients in a worker process, 640x480 VP8
plus Opus both ways) for the whole run. Meanwhile this process runs the load: `--cycles`
join/leave cycles (guardian and doctor of a consultation join over /ws, both leave),
`--idle-sockets` WebSockets opened and held without a message, and `--slow-loris` HTTP requests
that trickle a header (half of them) or a declared JSON body (the other half) a byte at a time.
The node's RSS, open file descriptors, event-loop tasks and rooms are read from its /metrics (ops
token) before, during and after the load; "after" is taken once the load has stopped and the
counts have settled (a bounded wait). One JSON document goes to stdout, logs to stderr. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import secrets
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.client import CallClient
from bench.clip import Clip, encode_opus, encode_vp8
from bench.relay import (
    NODE_START_TIMEOUT_S,
    STEP_TIMEOUT_S,
    Call,
    Pair,
    Worker,
    collect,
    free_port,
    machine,
    receive,
    seed_consultations,
    start_node,
    stop_node,
    wait_healthy,
)
from core.auth import Role, Tokens

log = logging.getLogger("bench.soak")

RSS_TARGET_MB = 5.0
SETTLE_POLL_S = 0.5  # how often the settle wait reads /metrics
SAMPLE_EVERY_S = 10.0  # /metrics during the load: the peaks and a series
CALL_SAMPLE_S = 0.2  # the call's connection state, in the worker
GAUGES = {  # what the soak reports -> the node's metric
    "rss_mb": "process_resident_memory_bytes",
    "open_fds": "process_open_fds",
    "tasks": "tc_asyncio_tasks",
    "rooms_hosted": "tc_live_consultations",
    "rooms_open": "tc_rooms_open",
    "websockets": "tc_websockets_in_memory",
}
FULL_COLLECTIONS = ("python_gc_collections_total", {"generation": "2"})


# -- the call (a worker process) --------------------------------------------------------------

async def watch_call(conn: Connection, base_url: str, pair: Pair, clips: dict[str, Clip]) -> None:
    """Start the call, report ready, then watch it from "window" to "stop" and report."""
    from signaling import ice  # offer 127.0.0.1 only, as the node does

    ice.use_host_addresses(["127.0.0.1"])
    async with aiohttp.ClientSession() as session:
        call = Call(0, CallClient(base_url, pair[0], clips, session),
                    CallClient(base_url, pair[1], clips, session))
        try:
            await call.start()
            conn.send(("ready",))
            if (await receive(conn, 600))[0] != "window":
                return
            started = time.monotonic()
            frames = {role: c.received["video"].frames for role, c in call.clients.items()}
            problems: list[str] = []
            stop = asyncio.create_task(receive(conn, 3600))
            while not stop.done():
                for role, client in call.clients.items():
                    problems.extend(_call_problems(role, client, time.monotonic() - started))
                await asyncio.wait([stop], timeout=CALL_SAMPLE_S)
            ended = time.monotonic()
            wall = ended - started
            conn.send(("result", {
                "seconds": round(wall, 1),
                "connected_throughout": not problems,
                "problems": problems[:20],
                "video_fps": {role: round((c.received["video"].frames - frames[role]) / wall, 1)
                              for role, c in call.clients.items()},
                "max_video_gap_s": {role: _max_gap(c.received["video"].times, started, ended)
                                    for role, c in call.clients.items()},
            }))
        finally:
            await call.end()


def _call_problems(role: str, client: CallClient, at: float) -> list[str]:
    """What is wrong with one side of the call now: its media, its socket, what it was told."""
    found = []
    if client.pc is None or client.pc.connectionState != "connected":
        found.append(f"{at:.1f} s: {role} media {client.pc and client.pc.connectionState}")
    if client.ws is None or client.ws.closed:
        found.append(f"{at:.1f} s: {role} socket closed")
    while not client.inbox.empty():
        message = client.inbox.get_nowait()
        if message["type"] in ("error", "closed") or (
                message["type"] == "participant" and message.get("status") != "connected"):
            found.append(f"{at:.1f} s: {role} was sent {message}")
    return found


def _max_gap(times: list[float], start: float, end: float) -> float:
    inside = [start, *(t for t in times if start <= t <= end), end]
    return round(max(b - a for a, b in itertools.pairwise(inside)), 2)


def call_main(conn: Connection, base_url: str, pair: Pair, clips: dict[str, Clip]) -> None:
    """Entry point of the call's process: its own event loop, so the load does not slow it."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s call %(levelname)s %(message)s")
    for noisy in ("aiortc", "aioice", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(watch_call(conn, base_url, pair, clips))
    except BaseException as exc:
        traceback.print_exc(file=sys.stderr)
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


@contextlib.contextmanager
def call_process(base_url: str, pair: Pair, clips: dict[str, Clip]) -> Any:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=call_main, name="soak-call", daemon=True,
                              args=(child, base_url, pair, clips))
    process.start()
    child.close()
    worker = Worker(process, parent, [0])
    try:
        yield worker
    finally:
        with contextlib.suppress(OSError):
            parent.send(("stop",))
        worker.stop()


# -- reading the node ------------------------------------------------------------------------

def fd_kinds(pid: int) -> dict[str, int]:
    """The node's open file descriptors by kind (/proc/<pid>/fd): sockets, the database's files,
    pipes, other files; the total alone does not tell a leak from a pool at its working size."""
    kinds: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(FileNotFoundError):
                target = os.readlink(fd)
                kind = ("socket" if target.startswith("socket:") else
                        "pipe" if target.startswith("pipe:") else
                        "database" if ".db" in target else
                        "anon_inode" if target.startswith("anon_inode:") else "other")
                kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items()))


@dataclass
class Probe:
    """Reads the node: its /metrics (ops token) and, for the kinds of its descriptors, /proc."""

    session: aiohttp.ClientSession  # force_close: no kept-alive scrape connection in the counts
    base_url: str
    token: str
    pid: int

    async def gauges(self) -> dict[str, Any]:
        async with self.session.get(f"{self.base_url}/metrics",
                                    headers={"Authorization": f"Bearer {self.token}"}) as r:
            r.raise_for_status()
            text = await r.text()
        samples = [sample for family in text_string_to_metric_families(text)
                   for sample in family.samples]
        values = {sample.name: sample.value for sample in samples}
        result: dict[str, Any] = {name: int(values[metric]) for name, metric in GAUGES.items()}
        result["rss_mb"] = round(values[GAUGES["rss_mb"]] / 2**20, 1)
        result["gc_full_collections"] = next(
            int(s.value) for s in samples
            if s.name == FULL_COLLECTIONS[0] and s.labels == FULL_COLLECTIONS[1])
        return result

    async def reading(self) -> dict[str, Any]:
        return {**await self.gauges(), "fds_by_kind": fd_kinds(self.pid)}

    async def settle(self, rooms: int, tasks: int, timeout: float
                     ) -> tuple[dict[str, Any], float, bool]:
        """Read until the rooms and the tasks are down to these counts (or fewer), at most
        `timeout` s: the last reading, how long it took, and whether it got there. (Closed
        sockets are not waited for: they go at the next full collection, which an idle node
        may not make for minutes.)"""
        started = time.monotonic()
        while True:
            now = await self.reading()
            done = (now["rooms_open"] <= rooms and now["rooms_hosted"] <= rooms
                    and now["tasks"] <= tasks)
            waited = time.monotonic() - started
            if done or waited > timeout:
                return now, round(waited, 1), done
            await asyncio.sleep(SETTLE_POLL_S)


# -- the load --------------------------------------------------------------------------------

@dataclass
class Tally:
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, what: str, exc: BaseException) -> None:
        self.failed += 1
        if len(self.errors) < 10:
            self.errors.append(f"{what}: {type(exc).__name__}: {exc}")


async def cycles(session: aiohttp.ClientSession, base_url: str, pairs: list[Pair], count: int,
                 concurrency: int, tally: Tally) -> None:
    """`count` join/leave cycles; each lane goes through its own consultations in turn, so a
    consultation's room has closed (or not) by the time it comes round again."""
    async def lane(first: int) -> None:
        mine = pairs[first::concurrency]
        for n in range(first, count, concurrency):
            guardian_token, doctor_token = mine[(n // concurrency) % len(mine)]
            try:
                await asyncio.wait_for(cycle(session, base_url, guardian_token, doctor_token),
                                       STEP_TIMEOUT_S)
                tally.done += 1
            except Exception as exc:
                tally.fail(f"cycle {n}", exc)

    await asyncio.gather(*(lane(i) for i in range(concurrency)))


async def cycle(session: aiohttp.ClientSession, base_url: str, *tokens: str) -> None:
    clients = [CallClient(base_url, token, {}, session) for token in tokens]
    try:
        for client in clients:
            await client.connect(STEP_TIMEOUT_S)
        for client in reversed(clients):
            await client.send({"type": "leave"})
            await client.expect("closed", STEP_TIMEOUT_S)
    finally:
        for client in clients:
            await client.close()


async def idle_socket(session: aiohttp.ClientSession, base_url: str, token: str,
                      stop: asyncio.Event, tally: Tally) -> None:
    """A WebSocket opened and never written to; it answers the node's pings (autoping)."""
    try:
        async with session.ws_connect(base_url.replace("http", "ws", 1) + "/ws",
                                      params={"token": token}, heartbeat=None) as ws:
            tally.done += 1
            reader = asyncio.create_task(_drain(ws))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait([reader, stopped], return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                tally.fail("idle socket", ConnectionError(f"closed by the node ({ws.close_code})"))
            reader.cancel()
            stopped.cancel()
    except Exception as exc:
        tally.fail("idle socket", exc)


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


@dataclass
class Loris:
    kind: str  # "headers": a header that never ends; "body": a declared body that never comes
    sent: int = 0
    closed_after_s: float | None = None  # when the node closed it, if it did
    response: str | None = None


async def slow_loris(port: int, kind: str, admin_token: str, interval: float,
                     stop: asyncio.Event) -> Loris:
    """One request trickled a byte every `interval` s until `stop` (or the node closes it)."""
    result = Loris(kind)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    if kind == "headers":
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    else:
        writer.write(b"POST /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer " + admin_token.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                     b'{"name": "')
    answer = asyncio.create_task(reader.read(200))
    stopped = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set() and not answer.done():
            try:
                writer.write(b"a")
                await writer.drain()
                result.sent += 1
            except ConnectionError:
                break
            await asyncio.wait([answer, stopped], timeout=interval,
                               return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            result.closed_after_s = round(time.monotonic() - started, 1)
            with contextlib.suppress(Exception):
                result.response = answer.result().split(b"\r\n", 1)[0].decode() or None
    finally:
        answer.cancel()
        stopped.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return result


def slope_per_1000(cycles: list[float], rss: list[float]) -> float | None:
    """Least-squares RSS growth in MB per 1,000 cycles (None without two distinct x)."""
    if len(cycles) < 2 or max(cycles) == min(cycles):
        return None
    mean_x, mean_y = sum(cycles) / len(cycles), sum(rss) / len(rss)
    sxx = sum((x - mean_x) ** 2 for x in cycles)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(cycles, rss, strict=True))
    return round(1000 * sxy / sxx, 2)


def rss_slopes(series: dict[str, list[float]]) -> dict[str, float | None]:
    """The pass's RSS slope over all its samples and over its second half (cycles done past
    half of the last reading): a one-off working set (the idle sockets, the database pool, the
    allocator's arenas) shows early, a leak keeps the same slope to the end."""
    cycles, rss = series.get("cycles", []), series.get("rss_mb", [])
    half = (cycles[-1] / 2) if cycles else 0
    tail = [(x, y) for x, y in zip(cycles, rss, strict=True) if x >= half]
    return {"whole_pass": slope_per_1000(cycles, rss),
            "second_half": slope_per_1000([x for x, _ in tail], [y for _, y in tail])}


def loris_summary(results: list[Loris], held_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"held_s": round(held_s, 1)}
    for kind in ("headers", "body"):
        mine = [r for r in results if r.kind == kind]
        closed = [r for r in mine if r.closed_after_s is not None]
        out[kind] = {
            "connections": len(mine),
            "still_open_at_the_end": len(mine) - len(closed),
            "closed_by_node_after_s": sorted(r.closed_after_s for r in closed),  # type: ignore
            "responses": sorted({r.response for r in closed if r.response}),
            "bytes_trickled": sum(r.sent for r in mine),
        }
    return out


SERIES = ("rss_mb", "tasks", "rooms_open", "websockets", "gc_full_collections")


async def sample(probe: Probe, stop: asyncio.Event, peaks: dict[str, float],
                 series: dict[str, list[float]], cycled: Tally) -> None:
    """Every SAMPLE_EVERY_S until `stop`: the highest value of each gauge, and a few as series
    with the cycles done by then (RSS between full collections is a saw-tooth; a leak is a
    slope)."""
    started = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            now = await probe.gauges()
            for key, value in now.items():
                peaks[key] = max(peaks.get(key, value), value)
            series.setdefault("s", []).append(round(time.monotonic() - started))
            series.setdefault("cycles", []).append(cycled.done)
            for key in SERIES:
                series.setdefault(key, []).append(now[key])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


# -- one run ----------------------------------------------------------------------------------

async def load(args: argparse.Namespace, count: int, port: int, pairs: list[Pair],
               tokens: Tokens, session: aiohttp.ClientSession, probe: Probe) -> dict[str, Any]:
    """The whole load at once, `count` cycles long; its tallies once every part has stopped."""
    base_url = probe.base_url
    stop = asyncio.Event()
    peaks: dict[str, float] = {}
    series: dict[str, list[float]] = {}
    cycled = Tally()
    sampler = asyncio.create_task(sample(probe, stop, peaks, series, cycled))
    idle = Tally()
    idle_tasks = [asyncio.create_task(idle_socket(session, base_url, pairs[i % len(pairs)][i % 2],
                                                  stop, idle))
                  for i in range(args.idle_sockets)]
    admin = tokens.issue(Role.ADMIN, "soak-admin")
    loris_tasks = [asyncio.create_task(slow_loris(port, ("headers", "body")[i % 2], admin,
                                                  args.loris_interval, stop))
                   for i in range(args.slow_loris)]
    started = time.monotonic()
    await cycles(session, base_url, pairs, count, args.concurrency, cycled)
    cycles_s = time.monotonic() - started
    stop.set()
    await asyncio.gather(*idle_tasks)
    lorises = await asyncio.gather(*loris_tasks, return_exceptions=True)
    await sampler
    failed_loris = [repr(r) for r in lorises if isinstance(r, BaseException)]
    return {
        "seconds": round(time.monotonic() - started, 1),
        "cycles": {"done": cycled.done, "failed": cycled.failed, "errors": cycled.errors,
                   "seconds": round(cycles_s, 1),
                   "per_second": round(cycled.done / max(cycles_s, 1e-6), 1)},
        "idle_sockets": {"opened": idle.done, "failed_or_closed_by_node": idle.failed,
                         "errors": idle.errors},
        "slow_loris": {**loris_summary([r for r in lorises if isinstance(r, Loris)],
                                       time.monotonic() - started),
                       "errors": failed_loris[:5]},
        "peak_during_load": peaks,
        "rss_mb_per_1000_cycles": rss_slopes(series),
        "series": series,
    }


async def soak(args: argparse.Namespace, clips: dict[str, Clip]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tc-soak-") as tmp:
        data_dir = Path(tmp)
        database_url = f"sqlite+aiosqlite:///{data_dir}/teleconsult.db"
        secret = secrets.token_urlsafe(36)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        tokens = Tokens(secret, 24 * 3600)
        pairs = await seed_consultations(data_dir, database_url, secret, port,
                                         1 + args.consultations)
        node = start_node(data_dir, database_url, secret, port)
        connector = aiohttp.TCPConnector(limit=0)  # the idle sockets are more than 100
        try:
            await asyncio.to_thread(wait_healthy, node, base_url, NODE_START_TIMEOUT_S)
            async with aiohttp.ClientSession(connector=connector) as session, \
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                          timeout=aiohttp.ClientTimeout(total=10)) as scrape:
                probe = Probe(scrape, base_url, tokens.issue(Role.OPS, "soak"), node.pid)
                readings = {"start": await probe.reading()}
                with call_process(base_url, pairs[0], clips) as call:
                    await asyncio.to_thread(collect, [call], "ready", 90)
                    call.conn.send(("window",))  # watched from here to the end of the load
                    warmup = None
                    if args.warmup_cycles:
                        log.info("warm-up pass: %d cycles with the idle sockets and slow requests",
                                 args.warmup_cycles)
                        warmup = await load(args, args.warmup_cycles, port, pairs[1:], tokens,
                                            session, probe)
                    readings["before"], _, _ = await probe.settle(1, 1 << 30, args.settle)
                    log.info("call up; load: %d cycles, %d idle sockets, %d slow requests",
                             args.cycles, args.idle_sockets, args.slow_loris)
                    report = await load(args, args.cycles, port, pairs[1:], tokens, session,
                                        probe)
                    readings["after"], settle_s, settled = await probe.settle(
                        1, readings["before"]["tasks"], args.settle)
                    call.conn.send(("stop",))
                    call_result = (await asyncio.to_thread(collect, [call], "result", 60))[0]
                # The call has ended (its doctor sent `end`): no room at all now.
                readings["end"], end_settle_s, end_settled = await probe.settle(
                    0, readings["start"]["tasks"], args.settle)
        finally:
            await connector.close()
            await asyncio.to_thread(stop_node, node)
    if warmup is not None:
        report["warmup"] = {k: warmup[k] for k in ("seconds", "cycles", "idle_sockets",
                                                   "peak_during_load", "rss_mb_per_1000_cycles")}
    return summarize(args, readings, report, call_result,
                     {"after_load_s": settle_s, "after_load_settled": settled,
                      "after_call_s": end_settle_s, "after_call_settled": end_settled})


def summarize(args: argparse.Namespace, readings: dict[str, dict[str, float]],
              report: dict[str, Any], call: dict[str, Any],
              settled: dict[str, Any]) -> dict[str, Any]:
    before, after = readings["before"], readings["after"]
    delta = {k: round(after[k] - before[k], 1) for k in (*GAUGES, "gc_full_collections")}
    checks = {
        "rooms_back": after["rooms_open"] == before["rooms_open"] == 1
        and after["rooms_hosted"] == 1 and readings["end"]["rooms_open"] == 0,
        "tasks_back": after["tasks"] <= before["tasks"],
        "rss_within_5_mb": delta["rss_mb"] <= RSS_TARGET_MB,
        "fds_back": after["open_fds"] <= before["open_fds"],
        "call_connected_throughout": call["connected_throughout"],
        "cycles_all_done": report["cycles"]["failed"] == 0,
    }
    return {
        "machine": machine(),
        "config": {"cycles": args.cycles, "concurrency": args.concurrency,
                   "consultations": args.consultations, "warmup_cycles": args.warmup_cycles,
                   "idle_sockets": args.idle_sockets, "slow_loris": args.slow_loris,
                   "loris_interval_s": args.loris_interval, "bitrate": args.bitrate},
        "node": readings,
        "delta_after_minus_before": delta,
        "rss_mb_after_minus_cold_start": round(after["rss_mb"] - readings["start"]["rss_mb"], 1),
        # The slope of the measured pass tells a leak from a working set that grew once: with
        # no warm-up pass "before" precedes the idle sockets and the pool's growth.
        "rss_mb_per_1000_cycles": report["rss_mb_per_1000_cycles"],
        "settle": settled,
        "load": report,
        "call": call,
        "checks": checks,
        "pass": all(checks.values()),
    }


# -- command line -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=2000, help="join/leave cycles")
    parser.add_argument("--concurrency", type=int, default=4, help="cycles at a time")
    parser.add_argument("--consultations", type=int, default=20,
                        help="consultations the cycles go round (the call has its own)")
    parser.add_argument("--warmup-cycles", type=int,
                        help="a first pass of the same load before the 'before' reading, this "
                        "many cycles (default: --cycles; 0: none)")
    parser.add_argument("--idle-sockets", type=int, default=200)
    parser.add_argument("--slow-loris", type=int, default=8,
                        help="slow requests (half trickle a header, half a body)")
    parser.add_argument("--loris-interval", type=float, default=1.0,
                        help="seconds between two bytes of a slow request")
    parser.add_argument("--settle", type=float, default=30.0,
                        help="longest wait for the counts to come back after the load")
    parser.add_argument("--bitrate", type=int, default=500_000, help="the call's VP8 bit/s")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.warmup_cycles is None:
        args.warmup_cycles = args.cycles
    if min(args.cycles, args.concurrency, args.consultations) < 1 or \
            args.consultations < args.concurrency:
        parser.error("--cycles, --concurrency, --consultations must be positive, "
                     "and at least one consultation per concurrent cycle")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)

    # A generous budget: about 0.5 s a cycle at worst on a busy 2-core machine, plus set-up.
    budget = math.ceil(300 + 0.5 * (args.cycles + args.warmup_cycles) + 3 * args.settle)

    def overrun(*_: object) -> None:
        raise TimeoutError(f"the soak ran over its {budget} s budget")

    signal.signal(signal.SIGALRM, overrun)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(budget)
    started = time.monotonic()
    clips = {"video": encode_vp8(640, 480, 30, seconds=4, bitrate=args.bitrate),
             "audio": encode_opus(1.0)}
    try:
        result = asyncio.run(soak(args, clips))
    except Exception as exc:
        log.error("the soak failed: %s", exc)
        result = {"error": f"{type(exc).__name__}: {exc}", "pass": False}
    signal.alarm(0)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if "error" in result:
        return 2
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
