"""Which store the node keeps its recordings (and identity's protected files) in.

The local folder is the one-node default. With several nodes, every node must see every stored
object (a failover re-homes a call, any node may replay or purge any recording), so they share
one S3-protocol bucket: AWS S3, MinIO, Ceph RGW, Aliyun OSS, Tencent COS, Huawei OBS. This module
holds only the settings; core/objects/store_factory.py builds the store they choose, and the S3
client lives in core/objects/s3.py, imported only when it is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("local", "s3")
CHECKSUMS = ("when_supported", "when_required")


@dataclass(frozen=True)
class StoreConfig:
    kind: str = "local"  # TC_RECORDING_STORE
    endpoint: str = ""  # TC_S3_ENDPOINT; empty: AWS's own endpoint for the region
    bucket: str = ""  # TC_S3_BUCKET
    region: str = "us-east-1"  # TC_S3_REGION
    prefix: str = ""  # TC_S3_PREFIX: every key starts with it (one bucket, several services)
    multipart_mb: int = 64  # TC_S3_MULTIPART_MB: larger files go up in parts of this size
    # TC_S3_CHECKSUM: botocore's default sends a CRC with every upload; a few older
    # S3-compatible services refuse it, and "when_required" sends one only where S3 needs it.
    checksum: str = "when_supported"
    # TC_S3_CONNECT_TIMEOUT / TC_S3_READ_TIMEOUT (seconds) and TC_S3_MAX_ATTEMPTS (botocore's
    # tries of one request): how long one upload may hang on a store that stopped answering
    # before the recorder calls it unreachable and keeps the segment in its spool
    # (recorder/uploads.py). The read timeout is per socket read or write, not per object.
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    max_attempts: int = 3
    # From the environment only (TC_S3_ACCESS_KEY_ID / TC_S3_SECRET_ACCESS_KEY); empty: the
    # client's own chain (AWS_ACCESS_KEY_ID..., an instance role). Never printed.
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)

    def checked(self) -> StoreConfig:
        if self.kind not in KINDS:
            raise ValueError(f"TC_RECORDING_STORE: {self.kind!r}: one of {', '.join(KINDS)}")
        if self.kind == "s3" and not self.bucket:
            raise ValueError("TC_RECORDING_STORE=s3 needs TC_S3_BUCKET")
        if self.checksum not in CHECKSUMS:
            raise ValueError(f"TC_S3_CHECKSUM: {self.checksum!r}: one of {', '.join(CHECKSUMS)}")
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError("TC_S3_ACCESS_KEY_ID and TC_S3_SECRET_ACCESS_KEY go together")
        if self.connect_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("TC_S3_CONNECT_TIMEOUT and TC_S3_READ_TIMEOUT: above 0 seconds")
        if self.max_attempts < 1:
            raise ValueError("TC_S3_MAX_ATTEMPTS: at least 1")
        if self.multipart_mb < 5:
            raise ValueError("TC_S3_MULTIPART_MB: at least 5 (S3's smallest part)")
        return self
