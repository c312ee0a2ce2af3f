"""A star of network namespaces: one router in the middle, each leaf joined to it by a veth pair.

Leaf i (from 1) is 10.77.i.1/24 on its `eth0`, the router's end `r-<leaf>` is 10.77.i.254 and
the leaf's default route. The router forwards (ip_forward=1) and does no reverse-path filtering,
so packets a `Shaper` writes back through a TUN device are routed on.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from netlab.namespace import Namespace

SUBNET = "10.77"


@dataclass(frozen=True)
class Leaf:
    name: str
    ns: Namespace
    address: str  # the leaf's own address
    router_dev: str  # the router's end of the veth pair
    router_address: str


class Lab:
    """`with Lab(["node", "doctor", "guardian"]) as lab: lab["doctor"].address` ..."""

    def __init__(self, leaves: Sequence[str]) -> None:
        if not 0 < len(leaves) < 254 or len(set(leaves)) != len(leaves):
            raise ValueError(f"need 1..253 distinct leaf names, got {leaves}")
        self.names = list(leaves)
        self.router = Namespace("router")
        self.leaves: dict[str, Leaf] = {}

    def __getitem__(self, name: str) -> Leaf:
        return self.leaves[name]

    def start(self) -> Lab:
        try:
            self.router.start()
            self.router.sysctl("net.ipv4.ip_forward", "1")
            for key in ("all", "default"):
                self.router.sysctl(f"net.ipv4.conf.{key}.rp_filter", "0")
            for i, name in enumerate(self.names, start=1):
                self.leaves[name] = self._add_leaf(i, name)
        except BaseException:
            self.stop()
            raise
        return self

    def _add_leaf(self, i: int, name: str) -> Leaf:
        ns = Namespace(name).start()
        leaf = Leaf(name, ns, f"{SUBNET}.{i}.1", f"r-{name}"[:15], f"{SUBNET}.{i}.254")
        self.leaves[name] = leaf  # stopped with the lab even if the rest fails
        # Both ends are made here with throw-away names, then moved and renamed.
        a, b = f"nl{secrets.token_hex(4)}", f"nl{secrets.token_hex(4)}"
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        _ip("link", "set", a, "netns", str(ns.pid))
        _ip("link", "set", b, "netns", str(self.router.pid))
        ns.run("ip", "link", "set", a, "name", "eth0")
        ns.run("ip", "addr", "add", f"{leaf.address}/24", "dev", "eth0")
        ns.run("ip", "link", "set", "eth0", "up")
        ns.run("ip", "route", "add", "default", "via", leaf.router_address)
        self.router.run("ip", "link", "set", b, "name", leaf.router_dev)
        self.router.run("ip", "addr", "add", f"{leaf.router_address}/24", "dev", leaf.router_dev)
        self.router.run("ip", "link", "set", leaf.router_dev, "up")
        self.router.sysctl(f"net.ipv4.conf.{leaf.router_dev}.rp_filter", "0")
        return leaf

    def stop(self) -> None:
        for leaf in self.leaves.values():
            with contextlib.suppress(Exception):
                leaf.ns.stop()
        with contextlib.suppress(Exception):
            self.router.stop()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
