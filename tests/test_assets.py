"""The call page and its modules reach a browser gzipped (core/assets.py): on a slow downlink their
~150 KB were most of the wait before the first picture (bench.impair, profile B)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import aiohttp

from server.app import STATIC_DIR

GZIP = {"Accept-Encoding": "gzip, deflate"}


async def _raw(node, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    async with node.session.get(node.url + path, headers=headers,
                                auto_decompress=False) as r:
        return r.status, dict(r.headers), await r.read()


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _page_assets() -> list[str]:
    """The call page's own files: its stylesheet, scripts and every module they import."""
    html = (STATIC_DIR / "call.html").read_text()
    names = set(re.findall(r'(?:src|href)="/static/([\w.-]+\.(?:js|css))"', html))
    names -= _preloaded()  # found from the imports below, so the preload test means something
    pending = [n for n in names if n.endswith(".js")]
    while pending:
        text = (STATIC_DIR / pending.pop()).read_text()
        for found in re.findall(r"from '\./([\w.-]+\.js)'", text):
            if found not in names:
                names.add(found)
                pending.append(found)
    return sorted(names)


def _preloaded() -> set[str]:
    html = (STATIC_DIR / "call.html").read_text()
    return set(re.findall(r'<link rel="modulepreload" href="/static/([\w.-]+\.js)">', html))


def test_the_call_page_preloads_every_module_it_imports() -> None:
    """Fetched beside call.js, not after it names them: a round trip and more on a slow link."""
    imported = {name for name in _page_assets() if name.endswith(".js")}
    imported -= {"call.js", "queue.js"}  # the page's own scripts
    assert imported and _preloaded() == imported


async def test_call_page_and_modules_are_gzipped_and_whole(node):
    assets = _page_assets()
    assert "call.js" in assets and "precall.js" in assets  # the crawl found the imports
    plain_total = packed_total = 0
    files = {"/call": _read(STATIC_DIR / "call.html")} | {
        f"/static/{name}": _read(STATIC_DIR / name) for name in assets}
    for path, plain in files.items():
        status, headers, body = await _raw(node, path, GZIP)
        assert status == 200, path
        if len(plain) < 1024:
            assert headers.get("Content-Encoding") is None, path
            assert body == plain
            continue
        assert headers.get("Content-Encoding") == "gzip", path
        assert "Accept-Encoding" in headers.get("Vary", ""), path
        assert gzip.decompress(body) == plain, path
        plain_total += len(plain)
        packed_total += len(body)
    assert packed_total < plain_total / 2.5, (packed_total, plain_total)
    # The page shell keeps its headers: never cached, no referrer.
    _, headers, _ = await _raw(node, "/call", GZIP)
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"].startswith("text/html")
    _, headers, _ = await _raw(node, "/static/call.js", GZIP)
    assert headers["Content-Type"].startswith(("text/javascript", "application/javascript"))


async def test_plain_for_a_client_without_gzip_and_not_modified(node):
    status, headers, body = await _raw(node, "/static/call.js", {"Accept-Encoding": "identity"})
    assert status == 200 and headers.get("Content-Encoding") is None
    assert body == _read(STATIC_DIR / "call.js")
    _, headers, _ = await _raw(node, "/static/call.css", GZIP)
    status, _, body = await _raw(node, "/static/call.css",
                                 {**GZIP, "If-Modified-Since": headers["Last-Modified"]})
    assert status == 304 and body == b""


async def test_nothing_outside_the_static_folder(node):
    for path in ("/static/../server/app.py", "/static/%2e%2e/server/app.py",
                 "/static/nope.js", "/static/"):
        async with node.session.get(node.url + path, headers=GZIP) as r:
            assert r.status == 404, path
    async with aiohttp.ClientSession() as plain:  # no normalisation by the client
        async with plain.get(node.url + "/static/..%2fserver%2fapp.py") as r:
            assert r.status == 404
