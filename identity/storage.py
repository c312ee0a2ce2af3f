"""Protected storage for face photos and evidence thumbnails (personal data).

Files live under <data dir>/identity, directories 0700 and files 0600, named by content hash so
nothing about the person is in a path; disk work runs off the event loop. Reading goes through
`read`, which callers pair with an
audit event (who read which file): the HTTP routes do.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path


class ProtectedStore:
    def __init__(self, root: Path) -> None:
        self.root = root

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
        directory = self._dir(*folder.split("/"))
        path = directory / f"{digest}{suffix}"
        tmp = path.with_suffix(path.suffix + ".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        tmp.replace(path)
        return str(path.relative_to(self.root)), digest

    def _read(self, relative: str) -> bytes:
        path = (self.root / relative).resolve()
        if self.root.resolve() not in path.parents:
            raise PermissionError(f"{relative!r} is outside the protected store")
        return path.read_bytes()
