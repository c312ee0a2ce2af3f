"""Static files and page shells, gzip-compressed for a browser that takes it.

The call page is ~150 KB of HTML, CSS and JavaScript modules, and a participant loads all of it
over their own link before they can join. On a slow downlink that was most of the wait for the
first picture (bench.impair, profile B, 300 kbit/s with 80 ms and 3 % loss: the doctor's page took
5.9 s to load, the direct-call reference page of 2 KB 0.3 s). Gzip makes it ~50 KB.

Each file is compressed once and kept in memory while its size and modification time stay the
same (the assets are a few hundred KB in all). Anything else (images, fonts, a browser that sends
no `Accept-Encoding: gzip`, a small file) is served as aiohttp's FileResponse serves it.
"""

from __future__ import annotations

import gzip
import mimetypes
import os
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from stat import S_ISREG

from aiohttp import hdrs, web

COMPRESSIBLE = frozenset({".html", ".js", ".mjs", ".css", ".json", ".svg", ".txt", ".map"})
MIN_BYTES = 1024  # below this gzip saves less than a packet


class Assets:
    """Serves files under `root`, compressed where it pays."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[Path, tuple[tuple[int, int], bytes]] = {}

    def gzipped(self, path: Path, stat: os.stat_result) -> bytes:
        """The file's gzip, made once per version of the file."""
        version = (stat.st_mtime_ns, stat.st_size)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == version:
            return hit[1]
        data = gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)
        self._cache[path] = (version, data)
        return data

    def response(self, request: web.Request, path: Path,
                 headers: dict[str, str] | None = None) -> web.StreamResponse:
        """`path` for this request: gzip if the browser takes it and it pays, else as is."""
        try:
            stat = path.stat()
        except OSError as exc:
            raise web.HTTPNotFound() from exc
        if not S_ISREG(stat.st_mode):
            raise web.HTTPNotFound()
        accepts = "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower()
        if not accepts or path.suffix not in COMPRESSIBLE or stat.st_size < MIN_BYTES:
            return web.FileResponse(path, headers=headers)
        modified = formatdate(stat.st_mtime, usegmt=True)
        out = {**(headers or {}), hdrs.LAST_MODIFIED: modified, hdrs.VARY: hdrs.ACCEPT_ENCODING}
        if _not_modified(request, stat.st_mtime):
            return web.Response(status=304, headers=out)
        kind, _ = mimetypes.guess_type(path.name)
        out[hdrs.CONTENT_ENCODING] = "gzip"
        return web.Response(body=self.gzipped(path, stat), headers=out,
                            content_type=kind or "application/octet-stream",
                            charset="utf-8" if (kind or "").startswith("text/") or
                            kind in ("application/javascript", "application/json") else None)

    def file(self, relative: str) -> Path:
        """`relative` under the root; 404 for anything that would leave it."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise web.HTTPNotFound()
        return path

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The `/static/{path}` route."""
        return self.response(request, self.file(request.match_info["path"]))


def _not_modified(request: web.Request, mtime: float) -> bool:
    since = request.headers.get(hdrs.IF_MODIFIED_SINCE)
    if not since:
        return False
    try:
        return int(mtime) <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError):
        return False
