"""Fixtures for live state: a private redis-server, and `live` over both backends.

The suite runs inside `unshare -n`, where the machine's Redis is out of reach, so each test that
needs Redis starts its own server on a free loopback port (no persistence) and kills it after.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.live import LiveState, MemoryLiveState, RedisLiveState

READY_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A private redis-server; stop() and start() (same port) let tests simulate an outage."""

    def __init__(self, workdir: Path, binary: str = "redis-server"):
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._binary = binary
        self._log = workdir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._proc is not None:
            return
        args = [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self._workdir), "--logfile", str(self._log)]
        try:
            self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        except FileNotFoundError:
            pytest.fail(f"{self._binary} is not on PATH (apt-get install redis-server)")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _answers_ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self._log.read_text() if self._log.exists() else "(no log)"
                pytest.fail(
                    f"redis-server on 127.0.0.1:{self.port} did not answer PING within "
                    f"{READY_TIMEOUT_S} s; its log:\n{log}",
                    pytrace=False,
                )
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self._proc is not None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty redis-server for this test."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
def live_backend(request: pytest.FixtureRequest) -> LiveState:
    if request.param == "memory":
        return MemoryLiveState()
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisLiveState(server.url)


@pytest.fixture
async def live(live_backend: LiveState) -> AsyncIterator[LiveState]:
    """The same suite runs against each backend."""
    await live_backend.start()
    try:
        yield live_backend
    finally:
        await live_backend.close()


@pytest.fixture
def live_peer_backend(live_backend: LiveState, request: pytest.FixtureRequest) -> LiveState:
    if isinstance(live_backend, MemoryLiveState):
        return live_backend
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisLiveState(server.url)


@pytest.fixture
async def live_peer(live: LiveState, live_peer_backend: LiveState) -> AsyncIterator[LiveState]:
    """Another node's view of `live`: a second Redis client, or the same in-process object."""
    if live_peer_backend is live:
        yield live
        return
    await live_peer_backend.start()
    try:
        yield live_peer_backend
    finally:
        await live_peer_backend.close()
