"""The store interface, on every backend: the local folder, and an S3-protocol server (moto's,
as its own process) with a bucket that has Object Lock and one that has none.

The same suite runs on all three, so whatever the recorder relies on (atomic visibility, Range
reads, listing by prefix, deletion) holds wherever recordings are kept. Retention and legal
holds are then checked where the store enforces them, and shown to be absent where it does not.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.objects.s3 import S3Storage
from core.objects.storage import LocalStorage, Storage, StoreRefused

from .s3_fixtures import S3Server

BACKENDS = ["local", "s3-locked", "s3-plain"]
MIB = 1024 * 1024


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "store")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = server.bucket(object_lock=request.param == "s3-locked")
    yield S3Storage(server.config(bucket, multipart_mb=5), "recordings/")


def _file(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def test_put_size_ranges_keys_delete(store: Storage, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    assert store.size("c1/doctor-00000.webm.enc") is None
    store.put_file("c1/doctor-00000.webm.enc", _file(tmp_path, "a", data))
    store.put_file("c1/guardian-00000.webm.enc", _file(tmp_path, "b", b"guardian"))
    store.put_file("c10/doctor-00000.webm.enc", _file(tmp_path, "c", b"other consultation"))
    assert store.size("c1/doctor-00000.webm.enc") == len(data)
    assert store.read_at("c1/doctor-00000.webm.enc", 0, 10) == data[:10]
    assert store.read_at("c1/doctor-00000.webm.enc", 65_536, 65_552) == data[65_536:131_088]
    assert store.read_at("c1/doctor-00000.webm.enc", len(data) - 5, 100) == data[-5:]
    assert store.read_at("c1/doctor-00000.webm.enc", len(data), 10) == b""
    assert store.keys("c1/") == ["c1/doctor-00000.webm.enc", "c1/guardian-00000.webm.enc"]
    assert store.keys("c10/") == ["c10/doctor-00000.webm.enc"]
    assert store.keys("c2/") == []
    assert store.delete("c1/guardian-00000.webm.enc") is True
    assert store.delete("c1/guardian-00000.webm.enc") is False
    assert store.size("c1/guardian-00000.webm.enc") is None
    assert store.keys("c1/") == ["c1/doctor-00000.webm.enc"]
    # Stored again under the same key (a recovery re-run): the new bytes are what is read.
    store.put_file("c1/doctor-00000.webm.enc", _file(tmp_path, "d", b"again"))
    assert store.size("c1/doctor-00000.webm.enc") == 5
    assert store.read_at("c1/doctor-00000.webm.enc", 0, 100) == b"again"


def test_keys_outside_the_store_are_refused(store: Storage, tmp_path: Path) -> None:
    for bad in ("../escape", "c1/../../escape"):
        with pytest.raises(ValueError):
            store.put_file(bad, _file(tmp_path, "x", b"x"))


def test_a_large_file_goes_up_in_parts_and_reads_back_across_them(
        store: Storage, tmp_path: Path, request) -> None:
    data = os.urandom(12 * MIB)  # above the 5 MiB threshold set above: three parts
    store.put_file("c1/big.webm.enc", _file(tmp_path, "big", data))
    assert store.size("c1/big.webm.enc") == len(data)
    for offset in (0, 5 * MIB - 7, 10 * MIB - 1, len(data) - 3):
        assert store.read_at("c1/big.webm.enc", offset, 20) == data[offset:offset + 20]
    if isinstance(store, S3Storage):
        head = store.client.head_object(Bucket=store.bucket, Key="recordings/c1/big.webm.enc")
        assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # a multipart object


def test_readers_see_the_whole_old_object_or_the_whole_new_one(store: Storage,
                                                               tmp_path: Path) -> None:
    """Atomic visibility: never a partial object, during a put of a new key or over one."""
    versions = [os.urandom(6 * MIB), os.urandom(6 * MIB)]  # multipart on S3
    store.put_file("c1/seg", _file(tmp_path, "v0", versions[0]))
    seen: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            new = store.size("c1/fresh")
            seen.append("absent" if new is None else "whole" if new == 6 * MIB else f"{new}")
            whole = store.read_at("c1/seg", 0, 7 * MIB)
            seen.append("v0" if whole == versions[0] else "v1" if whole == versions[1]
                        else f"mixed {len(whole)}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(4):
            store.put_file("c1/seg", _file(tmp_path, f"w{i}", versions[(i + 1) % 2]))
        store.put_file("c1/fresh", _file(tmp_path, "fresh", versions[0]))
    finally:
        stop.set()
        thread.join(60)
    assert set(seen) <= {"absent", "whole", "v0", "v1"}, sorted(set(seen))
    assert len(seen) > 2


def test_retention_where_the_store_has_object_lock(store: Storage, tmp_path: Path,
                                                   s3_server: S3Server) -> None:
    until = datetime.now(UTC) + timedelta(days=1)
    store.put_file("c1/kept", _file(tmp_path, "k", b"kept"), retain_until=until)
    if not store.object_lock:
        # Not enforced: the delete goes through (the database and purge are the guard).
        assert store.delete("c1/kept") is True
        return
    assert isinstance(store, S3Storage)
    head = s3_server.admin().head_object(Bucket=store.bucket, Key="recordings/c1/kept")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert abs((head["ObjectLockRetainUntilDate"] - until).total_seconds()) < 1
    with pytest.raises(StoreRefused) as refused:
        store.delete("c1/kept")
    assert "COMPLIANCE retention until" in refused.value.reason
    assert store.read_at("c1/kept", 0, 10) == b"kept"  # still there, not hidden by a marker
    assert store.keys("c1/") == ["c1/kept"]
    # Once the retention date has passed, the store lets it go, every version of it.
    soon = datetime.now(UTC) + timedelta(seconds=2)
    store.put_file("c1/brief", _file(tmp_path, "b", b"brief"), retain_until=soon)
    with pytest.raises(StoreRefused):
        store.delete("c1/brief")
    while datetime.now(UTC) <= soon + timedelta(seconds=0.5):  # a date to pass, on the clock
        time.sleep(0.1)
    assert store.delete("c1/brief") is True
    versions = s3_server.admin().list_object_versions(Bucket=store.bucket,
                                                      Prefix="recordings/c1/brief")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")


def test_legal_hold_where_the_store_has_object_lock(store: Storage, tmp_path: Path,
                                                    s3_server: S3Server) -> None:
    store.put_file("c1/held", _file(tmp_path, "h", b"held"))  # no retention date
    store.set_legal_hold("c1/held", True)
    if not store.object_lock:
        assert store.delete("c1/held") is True
        return
    assert isinstance(store, S3Storage)
    hold = s3_server.admin().get_object_legal_hold(Bucket=store.bucket, Key="recordings/c1/held")
    assert hold["LegalHold"]["Status"] == "ON"
    with pytest.raises(StoreRefused) as refused:
        store.delete("c1/held")
    assert "legal hold" in refused.value.reason
    store.set_legal_hold("c1/held", False)
    assert store.delete("c1/held") is True
    assert store.size("c1/held") is None


def test_object_lock_is_reported_as_the_bucket_has_it(s3_server: S3Server,
                                                      tmp_path: Path) -> None:
    locked = S3Storage(s3_server.config(s3_server.bucket(object_lock=True)), "recordings/")
    plain = S3Storage(s3_server.config(s3_server.bucket(object_lock=False)), "recordings/")
    assert locked.object_lock is True and "has Object Lock" in locked.lock_detail
    assert plain.object_lock is False and "has no Object Lock" in plain.lock_detail
    assert LocalStorage(tmp_path).object_lock is False
    missing = S3Storage(s3_server.config("tc-no-such-bucket"), "recordings/")
    with pytest.raises(Exception, match="NoSuchBucket"):
        _ = missing.object_lock


def test_prefixes_keep_areas_apart(s3_server: S3Server, tmp_path: Path) -> None:
    """Recordings and identity's files share a bucket, each under its own prefix."""
    config = s3_server.config(s3_server.bucket(object_lock=False), prefix="hospital-a/")
    from core.objects.store_factory import open_storage

    recordings = open_storage(config, tmp_path, "recordings")
    identity = open_storage(config, tmp_path, "identity")
    recordings.put_file("c1/x", _file(tmp_path, "r", b"r"))
    identity.put_file("enrollment/p", _file(tmp_path, "i", b"i"))
    assert recordings.keys("") == ["c1/x"] and identity.keys("") == ["enrollment/p"]
    listed = s3_server.admin().list_objects_v2(Bucket=config.bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == ["hospital-a/identity/enrollment/p",
                                                "hospital-a/recordings/c1/x"]
