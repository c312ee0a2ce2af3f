"""Real Chromium for tests and benchmarks: a launcher with a fake camera, and waits with
explicit timeouts and failure messages that say what the page was doing.

The fake camera file is per browser PROCESS, so a doctor and a guardian with different cameras
need two `launch_chromium` calls. Tests run under `unshare -n` with only loopback up.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")


# --------------------------------------------------------------------------------------------
# Chromium
# --------------------------------------------------------------------------------------------


def chromium_executable() -> str:
    for candidate in CHROMIUM_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"no Chromium at {CHROMIUM_PATHS}: apt-get install chromium")


def chromium_args(camera_y4m: Path) -> list[str]:
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera_y4m}",
        # Without it Chromium never offers 127.0.0.1 and ICE hangs in "checking" with no error.
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-sandbox",
    ]


# Console lines per page, so that waits can quote them in their failure messages.
_CONSOLE: dict[int, list[str]] = {}

# Chromium logs failed WebSocket URLs, which carry the join token: keep tokens out of artifacts.
_TOKEN = re.compile(r"(token=)[\w.~%-]+")


def _redact(text: str) -> str:
    return _TOKEN.sub(r"\1<redacted>", text)


@dataclass
class ChromiumSession:
    """One Chromium process (one fake camera) with one browser context."""

    browser: object
    context: object
    artifacts_dir: Path
    console: list[str] = field(default_factory=list)
    pages: list = field(default_factory=list)

    async def new_page(self, name: str | None = None):
        """A page whose console messages and uncaught errors go into `self.console`."""
        page = await self.context.new_page()
        label = name or f"page{len(self.pages) + 1}"
        lines = self.console

        def on_console(msg) -> None:
            lines.append(f"[{time.strftime('%H:%M:%S')}] {label} {msg.type}: {_redact(msg.text)}")

        def on_error(err) -> None:
            lines.append(f"[{time.strftime('%H:%M:%S')}] {label} pageerror: {_redact(str(err))}")

        page.on("console", on_console)
        page.on("pageerror", on_error)
        _CONSOLE[id(page)] = lines
        self.pages.append(page)
        return page

    async def screenshot(self, page, name: str) -> Path:
        """Save a full-page PNG under the artifacts directory and return its path."""
        path = self.artifacts_dir / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True, timeout=10_000)
        return path


def _prepare(camera_y4m: Path, artifacts_dir: Path) -> tuple[Path, Path]:
    camera_y4m = Path(camera_y4m).resolve()
    if not camera_y4m.is_file():
        raise FileNotFoundError(f"camera clip not found: {camera_y4m}")
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    return camera_y4m, artifacts_dir


@contextlib.asynccontextmanager
async def launch_chromium(
    camera_y4m: Path,
    artifacts_dir: Path,
    viewport: tuple[int, int] = (1280, 800),
    prefix: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> AsyncIterator[ChromiumSession]:
    """Headless Chromium whose camera is `camera_y4m` (microphone: Chromium's fake beep).

    `prefix` is a command Chromium runs under, e.g. `nsenter --net=...` to put it in a network
    namespace (netlab.Namespace.prefix). On exit the collected console lines are written to
    `artifacts_dir/console.log`.
    """
    from playwright.async_api import async_playwright

    camera_y4m, artifacts_dir = _prepare(camera_y4m, artifacts_dir)
    executable = chromium_executable()
    if prefix:  # Playwright takes one executable: a wrapper that execs Chromium under `prefix`
        wrapper = artifacts_dir / "chromium-wrapper.sh"
        command = " ".join(shlex.quote(part) for part in [*prefix, executable])
        wrapper.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        wrapper.chmod(0o755)
        executable = str(wrapper)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[*chromium_args(camera_y4m), *extra_args],
            timeout=30_000,
        )
        session = None
        try:
            context = await browser.new_context(
                viewport={"width": viewport[0], "height": viewport[1]},
                locale="zh-CN",
            )
            context.set_default_timeout(15_000)
            session = ChromiumSession(browser, context, artifacts_dir)
            yield session
        finally:
            if session is not None:
                (artifacts_dir / "console.log").write_text("\n".join(session.console) + "\n")
                for page in session.pages:
                    _CONSOLE.pop(id(page), None)
            await browser.close()


def _console_tail(page, n: int = 25) -> str:
    lines = _CONSOLE.get(id(page), [])
    if not lines:
        return "  (no console messages)"
    return "\n".join("  " + line for line in lines[-n:])


async def body_data(page) -> dict:
    """The page's `document.body.dataset` (state, peer, phase, ...)."""
    return await page.evaluate("() => Object.assign({}, document.body.dataset)")


async def wait_for_body_data(
    page, key: str, value: str | Sequence[str], timeout_s: float = 15.0
) -> str:
    """Wait until `document.body.dataset[key]` is `value` (or one of several); return it.

    Fails with the page's whole dataset and its last console lines.
    """
    wanted = [value] if isinstance(value, str) else list(value)
    try:
        handle = await page.wait_for_function(
            "([key, wanted]) => wanted.includes(document.body && document.body.dataset[key])"
            " ? document.body.dataset[key] : null",
            arg=[key, wanted],
            timeout=timeout_s * 1000,
            polling=100,
        )
        return await handle.json_value()
    except Exception as exc:
        try:
            data = await body_data(page)
        except Exception as inner:  # the page may be gone
            data = f"<unreadable: {inner}>"
        raise AssertionError(
            f"body.dataset.{key} did not become {' | '.join(wanted)} within {timeout_s:.0f} s "
            f"({type(exc).__name__}); dataset now: {json.dumps(data, ensure_ascii=False)}\n"
            f"console:\n{_console_tail(page)}"
        ) from None


_VIDEO_STATS_JS = """
(selector) => {
  const v = document.querySelector(selector);
  if (!v) return null;
  // Count presented frames with requestVideoFrameCallback (installed once per element).
  if (!v.__rvfcCount && v.requestVideoFrameCallback) {
    v.__rvfcCount = {n: 0};
    const tick = () => { v.__rvfcCount.n++; v.requestVideoFrameCallback(tick); };
    v.requestVideoFrameCallback(tick);
  }
  const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {totalVideoFrames: 0};
  return {
    width: v.videoWidth, height: v.videoHeight, readyState: v.readyState, paused: v.paused,
    decoded: q.totalVideoFrames, presented: v.__rvfcCount ? v.__rvfcCount.n : 0,
    hasStream: !!v.srcObject,
    tracks: v.srcObject ? v.srcObject.getTracks().map(t => t.kind + ':' + t.readyState) : [],
  };
}
"""


async def video_stats(page, selector: str = "#remote-video") -> dict | None:
    return await page.evaluate(_VIDEO_STATS_JS, selector)


async def remote_video_progress(
    page,
    timeout_s: float = 20.0,
    selector: str = "#remote-video",
    min_frames: int = 5,
    window_s: float = 1.5,
) -> dict:
    """Assert the video element shows a live picture: videoWidth > 0 and its frame count grows.

    Waits (up to `timeout_s` in all) for a picture, then for at least `min_frames` more decoded
    frames within `window_s` of each other. Returns the last stats (width, height, decoded, ...).
    """
    import asyncio

    deadline = time.monotonic() + timeout_s
    stats = None
    # 1. A picture.
    while time.monotonic() < deadline:
        stats = await video_stats(page, selector)
        if stats and stats["width"] > 0:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(
            f"{selector} showed no picture within {timeout_s:.0f} s: {stats}; "
            f"dataset: {await body_data(page)}\nconsole:\n{_console_tail(page)}"
        )
    # 2. Frames advancing.
    first = stats
    while time.monotonic() < deadline:
        await asyncio.sleep(window_s)
        stats = await video_stats(page, selector)
        if stats is None:
            break
        grew = stats["decoded"] - first["decoded"]
        shown = stats["presented"] - first["presented"]
        if stats["width"] > 0 and max(grew, shown) >= min_frames:
            return stats
        first = stats
    raise AssertionError(
        f"{selector} frames did not advance by {min_frames} within {window_s} s "
        f"(timeout {timeout_s:.0f} s): before {first}, after {stats}; "
        f"dataset: {await body_data(page)}\nconsole:\n{_console_tail(page)}"
    )
