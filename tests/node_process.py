"""A node as a real process (`python -m server run`), for tests that must kill it."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.client import CallClient
from core.auth import Tokens
from core.config import load_settings
from core.store import Database
from server.demo import Booking, seed
from signaling import ice

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeProcess:
    def __init__(self, data_dir: Path, port: int, secret: str, prefix: tuple[str, ...] = (),
                 ca: Path | None = None, **env: str) -> None:
        self.data_dir, self.port, self.secret = data_dir, port, secret
        self.prefix = prefix  # a command the node runs under (a mount namespace, say)
        # A node given TC_TLS_CERT/KEY serves https: the health checks trust this CA.
        self.tls = ssl.create_default_context(cafile=ca) if ca is not None else None
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / "node.log"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        # TC_* settings the suite sets (conftest: gates that are not under test) pass through.
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(TC_DATA_DIR=str(self.data_dir), TC_HOST="127.0.0.1", TC_PORT=str(self.port),
                   TC_ICE_HOST_ADDRESSES="127.0.0.1", TC_TOKEN_SECRET=self.secret,
                   TC_LOG_LEVEL="INFO", **self.env)
        return env

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`python -m server ARGS` with this node's settings, as an operator runs it there."""
        return subprocess.run([*self.prefix, sys.executable, "-m", "server", *args], cwd=ROOT,
                              env=self.environment(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, timeout: float = 30) -> None:
        env = self.environment()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "server", "run"],
                                         cwd=ROOT,
                                         env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2,
                                            context=self.tls) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)  # polling the health check, with a deadline
        raise TimeoutError(f"node not healthy within {timeout} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash or an OOM kill."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class BookedNode:
    """A node process, the database it uses (read directly by the test), tokens, a booking."""

    node: NodeProcess
    db: Database
    tokens: Tokens
    booking: Booking

    def client(self, role: str, clips: dict, session: aiohttp.ClientSession) -> CallClient:
        link = self.booking.guardian_link if role == "guardian" else self.booking.doctor_link
        return CallClient(self.node.url, link.split("#token=")[1], clips, session)


@asynccontextmanager
async def booked_node(data_dir: Path, secret: str, prefix: tuple[str, ...] = (),
                      ca: Path | None = None, **env: str) -> AsyncIterator[BookedNode]:
    """Book the demo consultation in the node's SQLite, start the node; stop it afterwards."""
    ice.use_host_addresses(["127.0.0.1"])  # this process's clients: loopback only
    port = free_port()
    settings = load_settings(data_dir=data_dir, token_secret=secret, host="127.0.0.1", port=port)
    tokens = Tokens(secret, 3600)
    db = await Database.open(settings.database_url)
    node = NodeProcess(data_dir, port, secret, prefix, ca, **env)
    try:
        booking = await seed(db, settings, tokens)
        node.start()
        yield BookedNode(node, db, tokens, booking)
    finally:
        node.stop()
        await db.close()
