"""A private coturn (`turnserver`) for a test: its own process (never the system service), the TURN
REST API secret the test generated, UDP and TCP listeners on the address the test names, no CLI,
no TLS, and nothing written outside the test's temporary directory (log, pid file, user db)."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REALM = "teleconsult.test"


@dataclass
class Coturn:
    workdir: Path
    ip: str = "127.0.0.1"
    port: int = 3478
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    # Relay only to these peers (as README advises: the node's media addresses); () for any.
    peers: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "turnserver.log"

    def urls(self, *transports: str) -> tuple[str, ...]:
        return tuple(f"turn:{self.ip}:{self.port}?transport={t}" for t in transports)

    def command(self) -> list[str]:
        binary = shutil.which("turnserver")
        if binary is None:
            raise FileNotFoundError("no turnserver: run scripts/test-services.sh (apt coturn)")
        return [
            binary, "-n",  # no configuration file: everything is on this line
            f"--listening-ip={self.ip}", f"--relay-ip={self.ip}",
            f"--listening-port={self.port}", "--min-port=49152", "--max-port=49999",
            f"--realm={REALM}", "--use-auth-secret", f"--static-auth-secret={self.secret}",
            "--fingerprint", "--no-tls", "--no-dtls", "--no-cli", "--no-rfc5780",
            "--allow-loopback-peers",  # the suite's peers may sit on 127.0.0.1
            *(["--denied-peer-ip=0.0.0.0-255.255.255.255"] if self.peers else []),
            *(f"--allowed-peer-ip={peer}" for peer in self.peers),
            f"--userdb={self.workdir / 'turndb'}", f"--pidfile={self.workdir / 'turnserver.pid'}",
            "--log-file=stdout", "--simple-log", "--verbose",
        ]

    def start(self, timeout: float = 10) -> None:
        """Start it in this process's network namespace; return once its TCP listener answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                socket.create_connection((self.ip, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)  # polling its listener, with a deadline
        self.stop()
        raise TimeoutError(f"turnserver not listening on {self.ip}:{self.port} within "
                           f"{timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> Coturn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
