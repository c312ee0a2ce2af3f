"""One network namespace, held open by a `sleep` process started under `unshare -n`.

Commands run inside it with `nsenter --net=/proc/PID/ns/net` (`prefix`); Python code runs inside
it in a thread of its own that called setns(2) (`call`): a socket keeps the namespace it was
created in, so a listening socket made there can be served by this process's event loop.
The holder gets SIGKILL when its parent dies (PR_SET_PDEATHSIG), so a crashed harness leaves no
namespace behind once the processes it started inside have exited.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
START_TIMEOUT_S = 10.0

_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """For preexec_fn: the child gets `sig` when the process that started it dies."""
    _libc.prctl(PR_SET_PDEATHSIG, sig)


class Namespace:
    """A network namespace named `name` (only a label: nothing is registered in /run/netns)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._holder: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        if self._holder is None:
            raise RuntimeError(f"namespace {self.name} is not started")
        return self._holder.pid

    @property
    def path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    @property
    def prefix(self) -> list[str]:
        """Put before a command to run it inside this namespace."""
        return ["nsenter", f"--net={self.path}", "--"]

    def start(self) -> Namespace:
        own = os.readlink("/proc/self/ns/net")
        self._holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"],
                                        stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT_S
        while os.readlink(self.path) == own:  # until unshare(2) has run in the holder
            if self._holder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"namespace {self.name}: `unshare --net` did not start "
                                   f"(exit code {self._holder.returncode}); are we root?")
            time.sleep(0.01)
        self.run("ip", "link", "set", "lo", "up")
        return self

    def stop(self) -> None:
        """Kill the holder: the namespace (and its veth ends) go when its last process exits."""
        if self._holder is not None and self._holder.poll() is None:
            self._holder.kill()
            self._holder.wait(5)

    def run(self, *cmd: str, check: bool = True) -> str:
        """Run a command inside; its stdout. A failure raises with the command's stderr."""
        done = subprocess.run([*self.prefix, *cmd], capture_output=True, text=True, timeout=30)
        if check and done.returncode != 0:
            raise RuntimeError(f"[{self.name}] {' '.join(cmd)}: exit {done.returncode}: "
                               f"{done.stderr.strip()}")
        return done.stdout

    def sysctl(self, key: str, value: str) -> None:
        self.run("sysctl", "-q", "-w", f"{key}={value}")

    def popen(self, cmd: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start a process inside, which gets SIGTERM if this process dies."""
        kwargs.setdefault("preexec_fn", lambda: die_with_parent(signal.SIGTERM))
        return subprocess.Popen([*self.prefix, *cmd], **kwargs)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn` in a new thread that has entered this namespace; its result or exception."""
        box: dict[str, object] = {}

        def inside() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {self.name}")
                finally:
                    os.close(fd)
                box["result"] = fn()
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=inside, name=f"netns-{self.name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"[{self.name}] {fn!r} did not return within {timeout:.0f} s")
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["result"]  # type: ignore[return-value]

    def __enter__(self) -> Namespace:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
