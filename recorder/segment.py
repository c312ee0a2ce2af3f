"""One open segment as the event loop sees it, and the blocking work of closing it.

The loop only hands packets to the writer thread (`executor.submit`, no waiting); a write error
is kept on the segment and noticed by the loop at the next packet, so a full disk stops the
recording of that consultation without ever blocking or breaking the call.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.objects.storage import Storage

from .crypto import seal
from .keys import KeyRing
from .spool_file import SpoolFile
from .webm import MuxStats, SegmentMuxer

BATCH_S = 0.1  # packets reach the file within this (well inside the 1 s cluster flush)
SPOOL_NAME = re.compile(r"^(?P<role>[a-z]+)-(?P<seq>\d{5})-(?P<t>\d+)\.webm$")


def spool_name(role: str, seq: int, t_start_ms: int) -> str:
    """Self-describing, so that recovery needs nothing but the file (and the recording's row)."""
    return f"{role}-{seq:05d}-{t_start_ms}.webm"


def storage_key(cid: str, role: str, seq: int) -> str:
    return f"{cid}/{role}-{seq:05d}.webm.enc"


class OpenSegment:
    def __init__(self, executor: Executor, spool: Path, cid: str, role: str, seq: int,
                 t_start_ms: int, boundary_ms: int, keys: KeyRing) -> None:
        self.cid, self.role, self.seq = cid, role, seq
        self.t_start_ms = t_start_ms
        self.boundary_ms = boundary_ms
        self.path = spool / cid / spool_name(role, seq, t_start_ms)
        self.error: str | None = None
        self.last_ms = t_start_ms
        self._executor = executor
        self._muxer = SegmentMuxer(self.path, keys=keys)
        self._batch: list[tuple[str, bytes, int]] = []
        self._timer: asyncio.TimerHandle | None = None

    def write(self, kind: str, data: bytes, t_ms: int) -> None:
        """Queue a packet; batches go to the writer thread every BATCH_S (a thread wake-up
        per packet cost more CPU than the muxing itself)."""
        self.last_ms = max(self.last_ms, t_ms)
        self._batch.append((kind, data, t_ms - self.t_start_ms))
        if len(self._batch) == 1:
            self._timer = asyncio.get_running_loop().call_later(BATCH_S, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._batch = self._batch, []
        if batch:
            self._executor.submit(self._write, batch)

    def _write(self, batch: list[tuple[str, bytes, int]]) -> None:
        if self.error is not None:
            return
        try:
            for kind, data, ms in batch:
                self._muxer.write(kind, data, ms)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._muxer.abort()

    def close_blocking(self) -> MuxStats | None:
        """In the writer thread, after every queued write: the trailer, or None on error."""
        if self.error is not None:
            return None
        try:
            return self._muxer.close()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._muxer.abort()
            return None


@dataclass(frozen=True)
class Stored:
    storage_key: str
    key_id: str  # the master key the data key is wrapped under
    size: int
    sha256: str
    plain_size: int
    wrapped_key: str  # the segment's data key, wrapped (kept in the index, not in the object)


def store_blocking(path: Path, key: str, storage: Storage, keys: KeyRing,
                   retain_until: datetime | None = None) -> Stored:
    """Encrypt the closed spool file (read through its own encryption) under a new data key,
    hash what will be stored, and store it (kept by a store with object lock until
    `retain_until`).

    The spool file stays until the segment is indexed (`discard_spool`): a process killed
    between the store and the index row would otherwise lose the whole segment (its data key
    is only in the row), and leave a stored object no row accounts for. With the spool file
    kept, recovery stores it again over the orphan and indexes it."""
    sealed = path.with_name(path.name + ".enc")
    with SpoolFile.open(path, keys) as plain:
        plain_size = plain.size
        wrapped = seal(plain, plain_size, sealed, keys)
    digest = hashlib.sha256()
    with open(sealed, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    size = sealed.stat().st_size
    storage.put_file(key, sealed, retain_until)
    sealed.unlink(missing_ok=True)
    return Stored(key, wrapped.kek_id, size, digest.hexdigest(), plain_size, wrapped.text)


def discard_spool(path: Path) -> None:
    """Drop a segment's working copy, once its stored object is indexed."""
    path.unlink(missing_ok=True)
