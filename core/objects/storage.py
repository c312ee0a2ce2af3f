"""Where closed segments live: a small interface, a local folder by default.

Everything above this module speaks in keys (`<consultation>/<role>-<seq>.webm.enc`) and byte
ranges, which is what an S3-protocol store offers too (PUT object, GET with Range, DELETE,
LIST by prefix): core/objects/s3.py is that store, chosen in core/objects/store_factory.py.
All methods are blocking: callers run them in the recorder's worker thread or `to_thread`.

Retention: a store with `object_lock` keeps each object until the `retain_until` it was written
with, and while its legal hold is on, whatever the database says; `delete` then raises
StoreRefused and the purge keeps the segment's row. The local folder enforces neither (anyone
with the node's file permissions can delete a file): there the database and the purge job are
the only guard, as the node says at start.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Protocol


class StoreRefused(Exception):
    """The store will not delete the object yet: its retention or legal hold still holds."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class StoreUnavailable(ConnectionError):
    """The store did not take the object (unreachable, timed out, answered an error): nothing
    is stored under the key, and the same upload may be tried again later. A ConnectionError,
    so callers that treat any OSError as "not stored" still do; the recorder tells it apart
    from a local disk error (recorder/uploads.py)."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: the store did not take it: {detail}")
        self.key = key
        self.detail = detail


class Storage(Protocol):
    @property
    def object_lock(self) -> bool:
        """Does the store itself enforce retention and legal holds? (May ask the store.)"""

    @property
    def description(self) -> str:
        """Where the objects are, for logs and /readyz (never a credential)."""

    def put_file(self, key: str, src: Path, retain_until: datetime | None = None) -> None:
        """Store `src` under `key` (atomically: readers see the old object or the new one),
        kept by the store until `retain_until` where it has `object_lock`. `src` may be
        consumed (moved); the caller removes what is left of it. Raises StoreUnavailable when
        a remote store did not take it (try again later), OSError for a local failure."""

    def size(self, key: str) -> int | None:
        """The stored object's size, or None when there is no such object."""

    def read_at(self, key: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`."""

    def delete(self, key: str) -> bool:
        """Remove the object; False when it was not there. Raises StoreRefused when the store
        keeps it (retention not over, legal hold on)."""

    def keys(self, prefix: str) -> list[str]:
        """Every key starting with `prefix`."""

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Put the object's legal hold on or off (nothing, where the store has no object lock)."""


class LocalStorage:
    """Objects as files under one folder (settings.recordings_dir / "store").

    No object lock: `retain_until` and legal holds are not enforced here (see the module
    docstring); the purge job honours them from the database."""

    object_lock = False

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @property
    def description(self) -> str:
        return f"local folder {self.root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"bad storage key {key!r}")
        return path

    def put_file(self, key: str, src: Path, retain_until: datetime | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".incoming")
        try:
            os.replace(src, tmp)  # same file system: a rename
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, path)

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def read_at(self, key: str, offset: int, length: int) -> bytes:
        with open(self._path(key), "rb") as f:
            f.seek(offset)
            return f.read(length)

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def keys(self, prefix: str) -> list[str]:
        base = self.root
        return sorted(str(p.relative_to(base)) for p in base.rglob("*")
                      if p.is_file() and not p.name.endswith((".incoming", ".tmp"))
                      and str(p.relative_to(base)).startswith(prefix))

    def set_legal_hold(self, key: str, on: bool) -> None:
        pass  # nothing to set: the database's hold is the only one here
