"""moto's standalone S3 server as its own process on 127.0.0.1, for the store tests and the
recording benchmark: it speaks the S3 protocol over HTTP and implements Object Lock, so the
project's own client (core/objects/s3.py) talks to it as to MinIO or OSS, with nothing patched."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

START_TIMEOUT_S = 30.0
# moto accepts any credentials; real ones never appear in the repository.
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

    def env(self, bucket: str) -> dict[str, str]:
        """A node's settings for this server's `bucket`."""
        return {"TC_RECORDING_STORE": "s3", "TC_S3_ENDPOINT": self.endpoint,
                "TC_S3_BUCKET": bucket,
                "TC_S3_ACCESS_KEY_ID": CREDENTIALS["access_key_id"],
                "TC_S3_SECRET_ACCESS_KEY": CREDENTIALS["secret_access_key"]}

    def stored_bytes(self, bucket: str) -> int:
        pages = self.admin().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sum(o["Size"] for page in pages for o in page.get("Contents", []))


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


@contextmanager
def moto_server() -> Iterator[S3Server]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
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
