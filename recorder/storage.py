"""Where closed segments live: a small interface, a local folder by default.

Everything above this module speaks in keys (`<consultation>/<role>-<seq>.webm.enc`) and byte
ranges, which is what an S3-compatible store offers too (PUT object, GET with Range, DELETE,
LIST by prefix), so such a store can take the local folder's place without other changes.
All methods are blocking: callers run them in the recorder's worker thread or `to_thread`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol


class Storage(Protocol):
    def put_file(self, key: str, src: Path) -> None:
        """Store `src` under `key` (atomically: readers see the old object or the new one)."""

    def size(self, key: str) -> int | None:
        """The stored object's size, or None when there is no such object."""

    def read_at(self, key: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`."""

    def delete(self, key: str) -> bool:
        """Remove the object; False when it was not there."""

    def keys(self, prefix: str) -> list[str]:
        """Every key starting with `prefix`."""


class LocalStorage:
    """Objects as files under one folder (settings.recordings_dir / "store")."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"bad storage key {key!r}")
        return path

    def put_file(self, key: str, src: Path) -> None:
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
