"""Impair the traffic towards (`down`) or from (`up`) one leaf of a `Lab`, on the router.

The router's ingress qdisc with a u32 filter (`ip dst <leaf>` on every other router port for
`down`, `ip src <leaf>` on the leaf's own port for `up`) and a `mirred` redirect sends the
matching packets out of a TUN device into `netlab.forwarder`, which holds, drops and paces them
and writes them back into the TUN; the router then routes them on as if they had just arrived.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

from netlab.lab import Lab, Leaf

REPLY_TIMEOUT_S = 10.0
_prio = itertools.count(10)


@dataclass(frozen=True)
class Impairment:
    rate_kbit: float = 0.0  # 0: no limit
    delay_ms: float = 0.0  # one way
    loss: float = 0.0  # probability 0..1
    queue_ms: float = 250.0  # router buffer at the rate limit


class Shaper:
    """`with Shaper(lab, "doctor", "down", Impairment(500, 40, 0.01)) as s: s.set(rate_kbit=400)`"""

    def __init__(self, lab: Lab, leaf: str, direction: Literal["down", "up"],
                 impairment: Impairment) -> None:
        self.lab, self.leaf, self.direction, self.impairment = lab, lab[leaf], direction, impairment
        self.prio = next(_prio)
        self.tun = f"tun{self.prio}{direction[0]}"
        self.proc: subprocess.Popen | None = None
        self.filtered: list[str] = []
        self.ready: dict[str, Any] = {}
        self.final: dict[str, Any] | None = None

    def _ports(self) -> list[tuple[str, str]]:
        """(router device, u32 match) pairs that catch this direction's packets."""
        me: Leaf = self.leaf
        if self.direction == "up":
            return [(me.router_dev, f"src {me.address}/32")]
        return [(other.router_dev, f"dst {me.address}/32")
                for other in self.lab.leaves.values() if other is not me]

    def start(self) -> Shaper:
        i, router = self.impairment, self.lab.router
        self.proc = router.popen(
            [sys.executable, "-m", "netlab.forwarder", "--tun", self.tun,
             "--rate-kbit", str(i.rate_kbit), "--delay-ms", str(i.delay_ms),
             "--loss", str(i.loss), "--queue-ms", str(i.queue_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        try:
            self.ready = self._read()
            if "ready" not in self.ready:
                raise RuntimeError(f"forwarder {self.tun}: {self.ready}")
            for dev, match in self._ports():
                router.run("tc", "qdisc", "replace", "dev", dev, "handle", "ffff:", "ingress")
                router.run("tc", "filter", "add", "dev", dev, "parent", "ffff:", "protocol", "ip",
                           "prio", str(self.prio), "u32", "match", "ip", *match.split(),
                           "action", "mirred", "egress", "redirect", "dev", self.tun)
                self.filtered.append(dev)
        except BaseException:
            self.stop()
            raise
        return self

    def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], REPLY_TIMEOUT_S)
        if not ready:
            raise TimeoutError(f"forwarder {self.tun} did not answer within {REPLY_TIMEOUT_S} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"forwarder {self.tun} exited (code {self.proc.poll()})")
        return json.loads(line)

    def request(self, **command: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def set(self, **link: float) -> dict[str, Any]:
        """Change rate_kbit, delay_ms, loss or queue_ms now; the forwarder's stats after it."""
        return self.request(**link)

    def stats(self) -> dict[str, Any]:
        return self.request(stats=True)

    def stop(self) -> None:
        """Remove the filters (traffic flows unimpaired again) and end the forwarder."""
        for dev in self.filtered:
            with contextlib.suppress(Exception):
                self.lab.router.run("tc", "filter", "del", "dev", dev, "parent", "ffff:",
                                    "prio", str(self.prio))
        self.filtered.clear()
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            deadline = time.monotonic() + REPLY_TIMEOUT_S
            while time.monotonic() < deadline and self.final is None:
                message = self._read()
                self.final = message.get("final")
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> Shaper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
