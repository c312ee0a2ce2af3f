"""Segments (and identity's protected files) in an S3-protocol bucket: AWS S3, MinIO, Ceph RGW,
Aliyun OSS, Tencent COS, Huawei OBS.

boto3, synchronous, on purpose. The Storage interface is blocking by design: segments are
encrypted, hashed and stored in the recorder's one writer thread, in order, and every other
caller is already in `asyncio.to_thread`; the decryptor behind HTTP Range replay calls
`read_at` synchronously too. A sync client in those threads keeps that contract, where
aiobotocore would make every caller (and the decryptor) async for no gain: the event loop never
waits on S3 either way. botocore signs (SigV4) and retries; s3transfer sends a file above
TC_S3_MULTIPART_MB as a multipart upload (parts in parallel, the object visible only once
complete), below it as one PUT. Clients are thread-safe; one per store, made from its own
Session.

Path-style addressing (`endpoint/bucket/key`) because MinIO and most private deployments have
no wildcard DNS for bucket subdomains.

Retention: when the bucket has Object Lock (it is versioned then), each object is written with
a COMPLIANCE retention until its `retain_until`, which nobody, the root account included, can
shorten. A plain DELETE in a versioned bucket would only add a delete marker and hide the data
while keeping it, so `delete` removes each version by id, which the store refuses while the
retention or a legal hold holds: StoreRefused, and the purge keeps the row.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from boto3.session import Session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .storage import StoreRefused, StoreUnavailable

if TYPE_CHECKING:
    from core.config.recording_store import StoreConfig

log = logging.getLogger(__name__)

MIB = 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}
# What a bucket without Object Lock (or a store that has none at all) answers.
_NO_LOCK = {"ObjectLockConfigurationNotFoundError", "NotImplemented", "InvalidRequest",
            "MethodNotAllowed", "XNotImplemented"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Storage:
    def __init__(self, config: StoreConfig, prefix: str) -> None:
        self.bucket = config.bucket
        self.prefix = prefix
        self.endpoint = config.endpoint
        self.lock_detail = ""
        session = Session(aws_access_key_id=config.access_key_id or None,
                          aws_secret_access_key=config.secret_access_key or None,
                          region_name=config.region)
        self.client: Any = session.client(
            "s3", endpoint_url=config.endpoint or None,
            config=Config(s3={"addressing_style": "path"},
                          retries={"max_attempts": config.max_attempts,
                                   "mode": "standard"},
                          connect_timeout=config.connect_timeout_s,
                          read_timeout=config.read_timeout_s,
                          request_checksum_calculation=config.checksum,
                          response_checksum_validation=config.checksum))
        part = config.multipart_mb * MIB
        self.transfer = TransferConfig(multipart_threshold=part, multipart_chunksize=part,
                                       max_concurrency=4)

    @property
    def description(self) -> str:
        return f"s3 bucket {self.bucket} at {self.endpoint or 'AWS'}, keys under {self.prefix}"

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad storage key {key!r}")
        return self.prefix + key

    @cached_property
    def object_lock(self) -> bool:
        """Asked once (GetObjectLockConfiguration). A bucket that cannot be reached raises:
        a node must not start recording into a store it cannot write."""
        try:
            answer = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) in _NO_LOCK:
                self.lock_detail = f"bucket {self.bucket} has no Object Lock ({_code(exc)})"
                return False
            raise
        enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            self.lock_detail = f"bucket {self.bucket} has no Object Lock"
            return False
        self.lock_detail = f"bucket {self.bucket} has Object Lock: COMPLIANCE retention"
        return True

    def put_file(self, key: str, src: Path, retain_until: datetime | None = None) -> None:
        extra: dict[str, Any] = {"ContentType": "application/octet-stream"}
        if retain_until is not None and self.object_lock:
            extra["ObjectLockMode"] = "COMPLIANCE"
            extra["ObjectLockRetainUntilDate"] = retain_until.astimezone(UTC)
        try:
            self.client.upload_file(str(src), self.bucket, self._key(key), ExtraArgs=extra,
                                    Config=self.transfer)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            # Unreachable, timed out, 5xx, refused: an incomplete PUT or multipart upload is
            # never visible (s3transfer aborts the multipart one), so trying again is safe.
            raise StoreUnavailable(key, f"{type(exc).__name__}: {exc}") from exc

    def size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket,
                                               Key=self._key(key))["ContentLength"])
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise

    def read_at(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key),
                                            Range=f"bytes={offset}-{offset + length - 1}")
        except ClientError as exc:
            if _code(exc) == "InvalidRange":  # from at or past the end
                return b""
            if _code(exc) in _MISSING:
                raise FileNotFoundError(key) from None
            raise
        with answer["Body"] as body:
            return body.read()

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        cut = len(self.prefix)
        return sorted(item["Key"][cut:] for page in pages for item in page.get("Contents", []))

    def _versions(self, full: str) -> tuple[list[str], list[str]]:
        """(object versions, delete markers) of exactly this key, newest first."""
        versions: list[str] = []
        markers: list[str] = []
        pages = self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=full)
        for page in pages:
            versions += [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == full]
            markers += [m["VersionId"] for m in page.get("DeleteMarkers", [])
                        if m["Key"] == full]
        return versions, markers

    def delete(self, key: str) -> bool:
        full = self._key(key)
        if not self.object_lock:
            existed = self.size(key) is not None
            self.client.delete_object(Bucket=self.bucket, Key=full)
            return existed
        versions, markers = self._versions(full)
        for version in versions:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=full, VersionId=version)
            except ClientError as exc:
                if _code(exc) != "AccessDenied":
                    raise
                raise StoreRefused(key, self._why_kept(full, version)) from None
        for marker in markers:
            self.client.delete_object(Bucket=self.bucket, Key=full, VersionId=marker)
        return bool(versions)

    def _why_kept(self, full: str, version: str) -> str:
        head = self.client.head_object(Bucket=self.bucket, Key=full, VersionId=version)
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            return "the object's legal hold is on"
        until = head.get("ObjectLockRetainUntilDate")
        if until is not None and until > datetime.now(UTC):
            return (f"{head.get('ObjectLockMode', 'COMPLIANCE')} retention until "
                    f"{until.astimezone(UTC).isoformat()}")
        return "the store refused the deletion (AccessDenied)"

    def set_legal_hold(self, key: str, on: bool) -> None:
        if not self.object_lock:
            return
        full = self._key(key)
        status = {"Status": "ON" if on else "OFF"}
        for version in self._versions(full)[0]:  # every version: a stored-again one too
            self.client.put_object_legal_hold(Bucket=self.bucket, Key=full, VersionId=version,
                                              LegalHold=status)
