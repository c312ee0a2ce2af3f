"""One participant's own network namespace, joined to the test's by a veth pair: for tests that
fence off, move, cut or shape one browser's network (TURN only, a network change, the pre-call
check on a slow link).

Namespaces are netlab's (a holder process; commands and Chromium run inside with `nsenter`,
`Namespace.prefix`). Everything lives inside the suite's own private namespace (`unshare -n` in
scripts/run-tests.sh), so the addresses here reach nothing else, and all of it goes with the
holder process.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from bench.chromium import ChromiumSession, launch_chromium, wait_for_body_data
from bench.faces import ADULT_A, CHILD_A, OBAMA, make_y4m, side_by_side
from core.config import load_settings
from netlab import Namespace
from server.app import create_app
from tests.node_fixtures import SECRET, Node


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


@contextmanager
def veth(here: str, here_cidrs: Sequence[str], ns: Namespace, there: str,
         there_cidrs: Sequence[str]) -> Iterator[None]:
    """A veth pair: `here` in this namespace, `there` inside `ns`, both up with their addresses.

    No IPv6 link-local addresses: the kernel would add them a second or two after the link
    comes up, and Chromium takes that for a network change and aborts the page's loads
    (ERR_NETWORK_CHANGED: the pre-call page came up without its modules once in CI)."""
    _run("ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", str(ns.pid))
    try:
        _run("ip", "link", "set", here, "addrgenmode", "none")
        ns.run("ip", "link", "set", there, "addrgenmode", "none")
        for cidr in here_cidrs:
            _run("ip", "addr", "add", cidr, "dev", here)
        _run("ip", "link", "set", here, "up")
        for cidr in there_cidrs:
            ns.run("ip", "addr", "add", cidr, "dev", there)
        ns.run("ip", "link", "set", there, "up")
        yield
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True, timeout=10)


@dataclass
class Peer:
    """The namespace at the far end of the veth pair `host_if` (here) ⇄ `peer_if` (there)."""

    ns: Namespace
    host_if: str
    peer_if: str

    @property
    def prefix(self) -> list[str]:
        """Run a command (Chromium: `launch_chromium(prefix=…)`) inside the namespace."""
        return self.ns.prefix

    def run(self, *argv: str) -> None:
        self.ns.run(*argv)

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


@contextmanager
def veth_peer(host_cidr: str, peer_cidr: str, name: str = "tcv") -> Iterator[Peer]:
    """A namespace at `peer_cidr` linked to this one at `host_cidr`; removed on exit."""
    with Namespace(name) as ns, veth(f"{name}0", [host_cidr], ns, f"{name}1", [peer_cidr]):
        yield Peer(ns, f"{name}0", f"{name}1")


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


@dataclass
class ApartCall:
    """A call on the real pages whose guardian sits in its own namespace (`net`), both joined."""

    node: Node
    cid: str
    net: Peer
    guardian: Any
    doctor: Any
    guardian_browser: ChromiumSession
    doctor_browser: ChromiumSession


@asynccontextmanager
async def call_with_guardian_apart(tmp: Path, artifacts: Path, host_ip: str, guardian_ip: str,
                                   name: str, seconds: float = 4) -> AsyncIterator[ApartCall]:
    """The node on `host_ip`, the doctor's Chromium beside it, the guardian's behind a veth pair
    at `guardian_ip`; the guardian has consented and joined, the doctor has joined."""
    doctor_cam = make_y4m(tmp / "doctor.y4m", OBAMA, seconds=seconds)
    guardian_cam = make_y4m(tmp / "guardian.y4m", side_by_side(ADULT_A, CHILD_A), seconds=seconds)
    with veth_peer(f"{host_ip}/24", f"{guardian_ip}/24", name=name) as net:
        async with node_on(host_ip, tmp / "node") as node:
            booking = await node.book()
            # Not localhost: camera and microphone need the origin treated as secure.
            secure = [f"--unsafely-treat-insecure-origin-as-secure={node.url}"]
            async with launch_chromium(guardian_cam, artifacts / "guardian", prefix=net.prefix,
                                       extra_args=secure) as g_browser, \
                    launch_chromium(doctor_cam, artifacts / "doctor",
                                    extra_args=secure) as d_browser:
                guardian = await g_browser.new_page("guardian")
                doctor = await d_browser.new_page("doctor")
                await guardian.goto(booking.guardian_link.replace(node.settings.public_url,
                                                                  node.url))
                await doctor.goto(booking.doctor_link.replace(node.settings.public_url, node.url))
                await guardian.check("#consent-check")
                await guardian.click("#join-btn")
                await wait_for_body_data(guardian, "state", "waiting")
                await doctor.click("#join-btn")
                yield ApartCall(node, booking.consultation_id, net, guardian, doctor, g_browser,
                                d_browser)
