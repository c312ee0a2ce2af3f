"""A second network namespace joined to the test's by a veth pair, for a browser whose address
changes mid-call (issue 11, network change). Deliberately small: one namespace, one link.

The namespace is held by a `sleep` started under `unshare -n`; commands run in it through
`nsenter --net=/proc/<pid>/ns/net`, and so does Chromium, through a wrapper script given to
Playwright as its executable. Everything lives inside the test's own private namespace
(`unshare -n` in scripts/run-tests.sh), so the addresses here reach nothing else, and the
namespace goes away with its holder process.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from server.app import create_app
from server.config import load_settings
from tests.browser import chromium_executable
from tests.node_fixtures import SECRET, Node


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


@dataclass
class Peer:
    """The namespace at the far end of the veth pair `host_if` (here) ⇄ `peer_if` (there)."""

    holder: subprocess.Popen[bytes]
    host_if: str
    peer_if: str

    @property
    def netns(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    def run(self, *argv: str) -> None:
        """A command inside the namespace (ip …)."""
        _run("nsenter", f"--net={self.netns}", *argv)

    def set_address(self, cidr: str, gateway: str | None = None) -> None:
        """Drop every address of the namespace's link and give it `cidr` (a new network: the
        sockets bound to the old address are dead), with a route through `gateway` if given."""
        self.run("ip", "addr", "flush", "dev", self.peer_if)
        self.run("ip", "addr", "add", cidr, "dev", self.peer_if)
        if gateway:
            self.run("ip", "route", "add", "default", "via", gateway, "dev", self.peer_if)

    def add_host_address(self, cidr: str) -> None:
        """Another address on this end of the link (a gateway for the namespace's new network)."""
        _run("ip", "addr", "add", cidr, "dev", self.host_if)

    def block_udp(self, blocked: bool) -> None:
        """Drop every UDP packet leaving either end of the link (media dies, TCP lives: a
        firewall or NAT that lost the mapping), or stop doing so. No `drop` action or `prio`
        qdisc on these kernels: u32 puts UDP into an HTB class whose queue holds nothing."""
        for run, dev in ((_run, self.host_if), (self.run, self.peer_if)):
            if not blocked:
                run("tc", "qdisc", "del", "dev", dev, "root")
                continue
            run("tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10")
            run("tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
                "rate", "1gbit")
            run("tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:30", "htb",
                "rate", "8bit")
            run("tc", "qdisc", "add", "dev", dev, "parent", "1:30", "pfifo", "limit", "0")
            run("tc", "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1",
                "u32", "match", "ip", "protocol", "17", "0xff", "flowid", "1:30")

    def shape(self, rate: str, where: str = "host") -> None:
        """Limit what leaves `where`'s end of the link (host: towards the namespace) to `rate`,
        e.g. "400kbit" (a token bucket; this kernel has no netem, and needs none for a rate)."""
        argv = ("tc", "qdisc", "replace", "dev", self.host_if if where == "host" else self.peer_if,
                "root", "tbf", "rate", rate, "burst", "16kb", "latency", "100ms")
        if where == "host":
            _run(*argv)
        else:
            self.run(*argv)

    def wrapper(self, directory: Path, *args: str) -> Path:
        """An executable that starts Chromium inside the namespace (for Playwright)."""
        return chromium_wrapper(directory / "chromium-in-netns", args,
                                prefix=("nsenter", f"--net={self.netns}"))


def chromium_wrapper(path: Path, args: Sequence[str], prefix: Sequence[str] = ()) -> Path:
    """A script that runs Chromium under `prefix` with extra `args` (Playwright's executable)."""
    argv = " ".join(shlex.quote(a) for a in (*prefix, chromium_executable(), *args))
    path.write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
    path.chmod(0o755)
    return path


@contextmanager
def veth_peer(host_cidr: str, peer_cidr: str, name: str = "tcv") -> Iterator[Peer]:
    """A namespace at `peer_cidr` linked to this one at `host_cidr`; removed on exit."""
    if os.geteuid() != 0:
        raise PermissionError("network namespaces need root (the suite runs as root under "
                              "unshare -n)")
    holder = subprocess.Popen(["unshare", "-n", "sleep", "3600"])
    host_if, peer_if = f"{name}0", f"{name}1"
    try:
        ns = f"/proc/{holder.pid}/ns/net"
        _wait_for_new_namespace(ns)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _run("ip", "link", "set", peer_if, "netns", str(holder.pid))
        _run("ip", "addr", "add", host_cidr, "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        peer = Peer(holder, host_if, peer_if)
        peer.run("ip", "link", "set", "lo", "up")
        peer.run("ip", "addr", "add", peer_cidr, "dev", peer_if)
        peer.run("ip", "link", "set", peer_if, "up")
        yield peer
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)
        holder.kill()
        holder.wait(timeout=10)


def _wait_for_new_namespace(ns: str, timeout_s: float = 5.0) -> None:
    """`unshare` makes the namespace, then execs sleep: until then /proc shows ours."""
    import time

    mine = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if os.stat(ns).st_ino != mine:
                return
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no new network namespace at {ns} within {timeout_s} s")
        time.sleep(0.01)


@asynccontextmanager
async def node_on(address: str, tmp: Path) -> AsyncIterator[Node]:
    """A node listening on `address` (the host end of a veth link) and offering it for ICE."""
    # The page rejoins through the URLs in `joined.nodes` (the public URL): it needs the port.
    with socket.socket() as probe:
        probe.bind((address, 0))
        port = probe.getsockname()[1]
    settings = load_settings(data_dir=tmp, token_secret=SECRET, host=address, port=port,
                             ice_host_addresses=[address], ice_servers=[],
                             public_url=f"http://{address}:{port}", rejoin_grace_s=60.0)
    app = create_app(settings)
    server = TestServer(app, host=address, port=port)
    await server.start_server()
    session = aiohttp.ClientSession()
    try:
        yield Node(app, server, session, settings)
    finally:
        await session.close()
        await server.close()
