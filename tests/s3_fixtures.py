"""A real S3-protocol server for the store tests: moto's standalone server, as its own process
(bench/s3_server.py), one per session; each test makes its own buckets. The suite's namespace
has only loopback, where it listens."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.s3_server import CREDENTIALS, moto_server
from bench.s3_server import S3Server as _Server
from core.config.recording_store import StoreConfig


class S3Server(_Server):
    def config(self, bucket: str, **overrides: Any) -> StoreConfig:
        return StoreConfig(kind="s3", endpoint=self.endpoint, bucket=bucket,
                           **{**CREDENTIALS, **overrides}).checked()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with moto_server() as server:
        yield S3Server(server.endpoint, server.process)
