"""A real S3-protocol server for the store tests: moto's standalone server, as its own process.

It speaks S3 over HTTP on 127.0.0.1 (the suite's namespace has only loopback) and implements
Object Lock (versioning, COMPLIANCE retention, legal holds). The project's own client code
(recorder/s3.py, boto3) talks to it exactly as it would to MinIO or OSS: nothing is patched.
One server per session; each test gets fresh buckets.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config

from recorder.store_config import StoreConfig

START_TIMEOUT_S = 30.0
CREDENTIALS = {"access_key_id": "moto-test-key", "secret_access_key": "moto-test-secret"}


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen

    def admin(self) -> Any:
        """A plain boto3 client, to look behind the store's back (retention, holds, versions)."""
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=CREDENTIALS["access_key_id"],
                            aws_secret_access_key=CREDENTIALS["secret_access_key"],
                            config=Config(s3={"addressing_style": "path"}))

    def bucket(self, object_lock: bool) -> str:
        name = f"tc-{'locked' if object_lock else 'plain'}-{secrets.token_hex(4)}"
        self.admin().create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        return name

    def config(self, bucket: str, **overrides: Any) -> StoreConfig:
        return StoreConfig(kind="s3", endpoint=self.endpoint, bucket=bucket,
                           **{**CREDENTIALS, **overrides}).checked()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_answering(server: S3Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"moto server exited with {server.process.returncode}")
        try:
            server.admin().list_buckets()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"moto server not answering within {START_TIMEOUT_S} s") from exc
            time.sleep(0.1)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    server = S3Server(f"http://127.0.0.1:{port}", process)
    try:
        _wait_answering(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
