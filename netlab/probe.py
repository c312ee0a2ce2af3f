"""UDP probes between two leaves of a Lab: round trip, and what a stream of packets came through as.

Used to check the forwarder itself (its added delay, that it keeps up with a few Mbit/s of small
packets) and to check an impairment does what it says.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from netlab.lab import Lab

PORT = 9999


def _udp(lab: Lab, leaf: str, port: int = 0) -> socket.socket:
    address = lab[leaf].address
    sock = lab[leaf].ns.call(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sock.bind((address, port))
    return sock


@contextlib.contextmanager
def echo(lab: Lab, leaf: str) -> Iterator[tuple[str, int]]:
    """A UDP echo server on `leaf` while the block runs; its (address, port)."""
    sock = _udp(lab, leaf, PORT)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                data, peer = sock.recvfrom(65536)
                sock.sendto(data, peer)

    thread = threading.Thread(target=serve, name="netlab-echo", daemon=True)
    thread.start()
    try:
        yield lab[leaf].address, PORT
    finally:
        stop.set()
        thread.join(2)
        sock.close()


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 3),
            "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
            "max": round(ordered[-1], 3), "n": len(ordered)}


def udp_rtt_ms(lab: Lab, client: str, server: str, rounds: int = 100,
               size: int = 200) -> dict[str, float | None]:
    """Ping-pong `rounds` UDP packets of `size` bytes; round trip quantiles in ms."""
    with echo(lab, server) as target:
        sock = _udp(lab, client)
        sock.settimeout(2.0)
        out = []
        try:
            for _ in range(rounds):
                start = time.perf_counter()
                sock.sendto(b"p" * size, target)
                with contextlib.suppress(TimeoutError):
                    sock.recvfrom(65536)
                    out.append((time.perf_counter() - start) * 1000)
        finally:
            sock.close()
    return _quantiles(out)


@dataclass
class StreamResult:
    sent: int
    received: int
    kbit_per_s: float  # received payload rate over the receiving time
    one_way_ms: dict[str, float | None]  # send -> receive, both in this process

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else 0.0


def udp_stream(lab: Lab, sender: str, receiver: str, kbit_per_s: float, seconds: float,
               size: int = 200) -> StreamResult:
    """Send `size`-byte packets at `kbit_per_s` for `seconds`; what arrived and how late."""
    rx = _udp(lab, receiver, PORT + 1)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)  # the probe's own stalls
    rx.settimeout(0.5)
    tx = _udp(lab, sender)
    interval = size * 8 / (kbit_per_s * 1000)
    delays: list[float] = []
    first_last: list[float] = []
    stop = threading.Event()

    def receive() -> None:
        while True:
            try:
                data = rx.recv(65536)
            except TimeoutError:
                if stop.is_set():
                    return
                continue
            now = time.perf_counter()
            delays.append((now - struct.unpack("!d", data[:8])[0]) * 1000)
            first_last[:] = [first_last[0] if first_last else now, now]

    thread = threading.Thread(target=receive, name="netlab-stream-rx", daemon=True)
    thread.start()
    sent, start = 0, time.perf_counter()
    try:
        while (now := time.perf_counter()) - start < seconds:
            due = start + sent * interval
            if now < due:
                time.sleep(due - now)
            tx.sendto(struct.pack("!d", time.perf_counter()) + b"s" * (size - 8),
                      (lab[receiver].address, PORT + 1))
            sent += 1
    finally:
        time.sleep(1.0)  # let the last packets (delayed, queued) arrive
        stop.set()
        thread.join(3)
        tx.close()
        rx.close()
    span = first_last[1] - first_last[0] if len(first_last) == 2 else 0.0
    rate = len(delays) * size * 8 / 1000 / span if span > 0 else 0.0
    return StreamResult(sent, len(delays), round(rate, 1), _quantiles(delays))
