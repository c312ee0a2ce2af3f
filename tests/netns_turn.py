"""Just enough network namespace plumbing for a test: a namespace the test creates, a veth pair
from the test's own namespace into it, commands run inside it.

The namespace is held by a child process (`unshare -n`) that exits when its stdin closes, so
nothing is registered under /run/netns and nothing outlives the test, even a killed one. Run the
suite under `unshare -n` (scripts/run-tests.sh): the veth pair then joins two private namespaces.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


def ip(*args: str) -> None:
    """`ip …` in this process's namespace; a failure raises with ip's own message."""
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@dataclass
class Namespace:
    holder: subprocess.Popen

    @property
    def path(self) -> str:
        return f"/proc/{self.holder.pid}/ns/net"

    @property
    def enter(self) -> tuple[str, ...]:
        """A command prefix that runs the rest of the command inside this namespace."""
        return ("nsenter", f"--net={self.path}")

    def run(self, args: Sequence[str], timeout: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run([*self.enter, *args], check=True, capture_output=True, text=True,
                              timeout=timeout)

    def ip(self, *args: str) -> None:
        self.run(["ip", *args])


@contextmanager
def namespace() -> Iterator[Namespace]:
    """A new network namespace with loopback up."""
    holder = subprocess.Popen(
        ["unshare", "-n", "--", "sh", "-c", "ip link set lo up && echo ready && exec cat"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        ready = holder.stdout.readline().strip()  # written only once the namespace is set up
        if ready != "ready":
            raise RuntimeError(f"could not create a network namespace (exit {holder.wait(5)})")
        yield Namespace(holder)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # `cat` ends, the namespace and its interfaces go with it
        holder.wait(10)


@contextmanager
def veth(here: str, here_cidrs: Sequence[str], ns: Namespace, there: str,
         there_cidrs: Sequence[str]) -> Iterator[None]:
    """A veth pair: `here` in this namespace, `there` inside `ns`, both up with their addresses."""
    ip("link", "add", here, "type", "veth", "peer", "name", there, "netns",
       str(ns.holder.pid))
    try:
        for cidr in here_cidrs:
            ip("addr", "add", cidr, "dev", here)
        ip("link", "set", here, "up")
        for cidr in there_cidrs:
            ns.ip("addr", "add", cidr, "dev", there)
        ns.ip("link", "set", there, "up")
        yield
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True, timeout=10)
