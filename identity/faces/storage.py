"""Protected storage for face photos and evidence thumbnails (personal data).

Files live under <data dir>/identity, directories 0700 and files 0600, named by content hash so
nothing about the person is in a path; disk work runs off the event loop. With the node's
recordings in an S3-protocol bucket (TC_RECORDING_STORE=s3, issue 12) they go there instead,
under `<prefix>identity/` with the same relative names, so every node reads what any node
enrolled; the local folder then only holds each file for the moment of its upload. Reading goes
through `read`, which callers pair with an audit event (who read which file): the HTTP routes do.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

from core.config.recording_store import StoreConfig
from core.objects.storage import Storage
from core.objects.store_factory import open_storage


def protected_store(root: Path, store: StoreConfig) -> ProtectedStore:
    """The node's protected store: in the recordings' bucket when there is one."""
    remote = open_storage(store, root, "identity") if store.kind == "s3" else None
    return ProtectedStore(root, remote)


class ProtectedStore:
    def __init__(self, root: Path, remote: Storage | None = None) -> None:
        self.root = root
        self.remote = remote

    def _dir(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        return path

    async def put(self, folder: str, data: bytes, suffix: str) -> tuple[str, str]:
        """Store bytes; return (path relative to the root, SHA-256). Raises OSError."""
        return await asyncio.to_thread(self._put, folder, data, suffix)

    async def read(self, relative: str) -> bytes:
        return await asyncio.to_thread(self._read, relative)

    def _put(self, folder: str, data: bytes, suffix: str) -> tuple[str, str]:
        digest = hashlib.sha256(data).hexdigest()
        if self.remote is not None:
            relative = f"{folder}/{digest}{suffix}"
            fd, tmp = tempfile.mkstemp(dir=self._dir(".upload"))  # 0600
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                self.remote.put_file(relative, Path(tmp))
            finally:
                Path(tmp).unlink(missing_ok=True)
            return relative, digest
        directory = self._dir(*folder.split("/"))
        path = directory / f"{digest}{suffix}"
        tmp_path = path.with_suffix(path.suffix + ".part")
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        tmp_path.replace(path)
        return str(path.relative_to(self.root)), digest

    def _read(self, relative: str) -> bytes:
        if self.remote is not None:
            try:
                size = self.remote.size(relative)
            except ValueError:
                raise PermissionError(f"{relative!r} is outside the protected store") from None
            if size is None:
                raise FileNotFoundError(relative)
            return self.remote.read_at(relative, 0, size)
        path = (self.root / relative).resolve()
        if self.root.resolve() not in path.parents:
            raise PermissionError(f"{relative!r} is outside the protected store")
        return path.read_bytes()
