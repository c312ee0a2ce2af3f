"""Prometheus metrics of this node (/metrics), in one registry the other modules update.

Kept in one place so that the names, labels and help texts stay consistent and greppable; the
recorder and the identity checks import the objects they update from here.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)

from core.histogram import LogHistogram

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, memory, open fds
GCCollector(registry=REGISTRY)  # python_gc_*: whether memory waits on the cyclic collector

LIVE_CONSULTATIONS = Gauge("tc_live_consultations", "Consultations hosted on this node",
                           registry=REGISTRY)
PARTICIPANTS = Gauge("tc_participants", "Participants connected to this node", ["role"],
                     registry=REGISTRY)
JOIN_LATENCY = Histogram(
    "tc_join_latency_seconds", "From a participant's join to its media connected",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 20), registry=REGISTRY)
VERIFICATIONS = Counter("tc_verifications_total", "Doctor face verifications by outcome",
                        ["outcome"], registry=REGISTRY)
RECORDING_BYTES = Counter("tc_recording_bytes_total", "Bytes of recorded media written",
                          registry=REGISTRY)
RECORDING_ERRORS = Counter("tc_recording_errors_total", "Recording write failures",
                           registry=REGISTRY)
RECORDING_WAITING = Gauge("tc_recording_segments_waiting",
                          "Closed segments waiting in the spool for the store", registry=REGISTRY)
SIGNALING_ERRORS = Counter("tc_signaling_refused_total", "Signaling messages refused", ["code"],
                           registry=REGISTRY)
LIVE_STATE_ERRORS = Counter("tc_live_state_errors_total",
                            "Live-state (Redis) calls that failed", registry=REGISTRY)
LOOP_LAG = Gauge("tc_event_loop_lag_seconds", "Event-loop lag, last measurement",
                 registry=REGISTRY)
NODE_CPU = Gauge("tc_node_cpu_percent", "This node's CPU use, percent of one core (last 5 s)",
                 registry=REGISTRY)
# Issue 17: what a leak shows in (bench/soak.py). A room that is open but not hosted (more open
# rooms than tc_live_consultations) was forgotten without being closed.
ROOMS_OPEN = Gauge("tc_rooms_open", "Rooms in memory that are not closed yet", registry=REGISTRY)
TASKS = Gauge("tc_asyncio_tasks", "Tasks alive in the node's event loop", registry=REGISTRY)
# A closed call socket is cyclic garbage in aiohttp (request <-> protocol <-> socket; and a
# heartbeat re-armed by the peer's close frame): it goes at the next full collection.
WEBSOCKETS = Gauge("tc_websockets_in_memory", "Call WebSockets (open or closed) not yet freed",
                   registry=REGISTRY)


def _tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # read outside the loop (never by /metrics, which runs in it)
        return 0


TASKS.set_function(_tasks)

# Every lag sample, for percentiles over any window (GET /metrics/timing; the gauge above has
# only the last one).
LOOP_LAGS = LogHistogram()


async def watch_loop_and_cpu(interval_s: float = 0.5, cpu_window_s: float = 5.0) -> None:
    """Measure how late the loop wakes us (lag) and the process CPU, until cancelled.

    Every `interval_s` (TC_LOOP_WATCH_MS): a signaling message waits as long as a timer does, so
    the lag is what a participant's message can wait on a busy node. 500 ms costs nothing;
    bench/relay.py samples every 10 ms, which costs an idle node 1.4 % of a core.
    """
    loop = asyncio.get_running_loop()
    cpu_every = max(1, round(cpu_window_s / interval_s))
    cpu_at, wall_at, ticks = time.process_time(), time.monotonic(), 0
    while True:
        expected = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        lag = max(0.0, loop.time() - expected)
        LOOP_LAG.set(lag)
        LOOP_LAGS.add(lag)
        ticks += 1
        if ticks % cpu_every == 0:
            cpu, wall = time.process_time(), time.monotonic()
            NODE_CPU.set(round(100 * (cpu - cpu_at) / max(wall - wall_at, 1e-6), 1))
            cpu_at, wall_at = cpu, wall
