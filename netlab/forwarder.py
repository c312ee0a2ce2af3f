"""The impairment forwarder: reads IP packets from a TUN device, delays, drops and rate-limits
them (`netlab.link.Link`), and writes them back into the same device, from where the namespace
routes them on. Run inside the router namespace, one process per impaired direction:

    python -m netlab.forwarder --tun tun-d0 --rate-kbit 500 --delay-ms 40 --loss 0.01

It creates the device, brings it up and prints one JSON line `{"ready": ...}`. Then it takes
JSON commands, one a line, on stdin, and answers each with one JSON line on stdout:
`{"rate_kbit": 400}` (also `delay_ms`, `loss`, `queue_ms`) changes the link now;
`{"stats": true}` reports counters. End of stdin ends it. A heap of (release time, packet) and
select(2) with the time to the next release: a single thread, no timer per packet.

`late_ms` in the stats is how long after its due time each packet was actually written: the
forwarder's own scheduling error (reading, the heap, the write are on top of `delay_ms`).
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import json
import os
import select
import struct
import subprocess
import sys
import time
from itertools import count

from netlab.link import Link

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536


def open_tun(name: str) -> int:
    """Create (in the calling thread's network namespace) and open a TUN device, non-blocking."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Forwarder:
    def __init__(self, fd: int, link: Link) -> None:
        self.fd, self.link = fd, link
        self.queue: list[tuple[float, int, bytes]] = []
        self.order = count()  # ties in release time keep arrival order
        self.written = 0
        self.write_errors = 0
        self.late: list[float] = []  # ms, a bounded sample

    def receive(self) -> None:
        """Read every packet waiting on the device."""
        now = time.monotonic()
        while True:
            try:
                packet = os.read(self.fd, MAX_PACKET)
            except BlockingIOError:
                return
            at = self.link.offer(len(packet), now)
            if at is not None:
                heapq.heappush(self.queue, (at, next(self.order), packet))

    def release(self) -> float | None:
        """Write every packet that is due; seconds until the next one (None: queue empty)."""
        now = time.monotonic()
        while self.queue and self.queue[0][0] <= now:
            due, _, packet = heapq.heappop(self.queue)
            try:
                os.write(self.fd, packet)
                self.written += 1
            except OSError:
                self.write_errors += 1
            if len(self.late) < 100_000:
                self.late.append((now - due) * 1000)
        return self.queue[0][0] - now if self.queue else None

    def stats(self) -> dict:
        c = self.link.counters
        late = sorted(self.late)

        def q(p: float) -> float | None:
            return round(late[min(len(late) - 1, int(p * len(late)))], 3) if late else None

        return {"packets": c.packets, "bytes": c.bytes, "lost": c.lost,
                "queue_drops": c.queue_drops, "max_queue_ms": round(c.max_queue_ms, 1),
                "written": self.written, "write_errors": self.write_errors,
                "queued": len(self.queue), "rate_kbit": self.link.rate_kbit,
                "delay_ms": self.link.delay_ms, "loss": self.link.loss,
                "late_ms": {"p50": q(0.5), "p99": q(0.99), "max": q(1.0)}}

    def command(self, line: str) -> dict:
        try:
            request = json.loads(line)
            for key in ("rate_kbit", "delay_ms", "loss", "queue_ms"):
                if key in request:
                    setattr(self.link, key, float(request[key]))
        except (ValueError, TypeError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}
        return self.stats()

    def run(self, control) -> None:
        buffered = b""
        while True:
            wait = self.release()
            readable, _, _ = select.select([self.fd, control], [], [], wait)
            if self.fd in readable:
                self.receive()
            if control in readable:
                chunk = os.read(control, 4096)
                if not chunk:
                    return
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    reply(self.command(line.decode()))


def prioritize() -> str:
    """Run before the endpoints: a starved forwarder would add its own delay and jitter.

    SCHED_FIFO if allowed (root), else a lower nice value; what was got goes into `ready`.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        return "SCHED_FIFO 10"
    except (OSError, AttributeError):
        pass
    try:
        os.nice(-10)
        return "nice -10"
    except OSError:
        return "normal"


def reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netlab.forwarder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tun", required=True, help="TUN device to create, <= 15 characters")
    parser.add_argument("--rate-kbit", type=float, default=0.0, help="0: no rate limit")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--loss", type=float, default=0.0, help="probability, 0..1")
    parser.add_argument("--queue-ms", type=float, default=250.0,
                        help="router buffer: the longest a packet may wait for the rate limit")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    fd = open_tun(args.tun)
    subprocess.run(["ip", "link", "set", args.tun, "up"], check=True, timeout=10)
    forwarder = Forwarder(fd, Link(args.rate_kbit, args.delay_ms, args.loss, args.queue_ms,
                                   args.seed))
    reply({"ready": args.tun, "pid": os.getpid(), "priority": prioritize()})
    try:
        forwarder.run(sys.stdin.fileno())
    except KeyboardInterrupt:
        pass
    reply({"final": forwarder.stats()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
