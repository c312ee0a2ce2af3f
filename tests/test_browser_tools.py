"""Self-test of the browser test tools: y4m camera clips and headless Chromium's fake camera.

Run under `unshare -n` (only loopback), like the whole suite: scripts/run-tests.sh.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import av
import numpy as np
import pytest

from bench.chromium import launch_chromium, remote_video_progress, video_stats, wait_for_body_data
from bench.faces import (
    ADULT_A,
    CHILD_A,
    OBAMA,
    Segment,
    empty_scene,
    make_y4m,
    read_y4m_info,
    side_by_side,
)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser_tools"


def test_make_y4m_header_and_size(tmp_path: Path) -> None:
    started = time.monotonic()
    clip = make_y4m(tmp_path / "obama.y4m", OBAMA, seconds=4, fps=15)
    assert time.monotonic() - started < 5, "a 4 s clip should build in well under 5 s"

    info = read_y4m_info(clip)
    assert (info.width, info.height, info.fps, info.colorspace) == (640, 480, 15.0, "420jpeg")
    assert info.frames == 60
    frame_bytes = len(b"FRAME\n") + 640 * 480 * 3 // 2
    assert clip.stat().st_size == info.header_bytes + 60 * frame_bytes

    # PyAV (FFmpeg's y4m demuxer) reads the same clip: 60 distinct frames of 640x480 4:2:0.
    with av.open(str(clip)) as container:
        frames = [f.to_ndarray() for f in container.decode(video=0)]
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 480)
        assert stream.codec_context.format.name.startswith("yuv420p")
    assert len(frames) == 60
    # Pan/zoom: every frame differs from the one before it, but only a little.
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in itertools.pairwise(frames)]
    assert min(diffs) > 0.05, diffs
    assert max(diffs) < 20, diffs
    # A photo, not a flat field: plenty of contrast in the luma plane.
    assert frames[0][:480].std() > 30


def test_make_y4m_segments(tmp_path: Path) -> None:
    clip = make_y4m(
        tmp_path / "leaves.y4m",
        [
            Segment(side_by_side(ADULT_A, CHILD_A), 2),
            Segment(CHILD_A, 1),
            Segment(empty_scene(), 1),
        ],
        fps=10,
        size=(320, 240),
    )
    info = read_y4m_info(clip)
    assert (info.width, info.height, info.frames) == (320, 240, 40)
    # Untimed photos share `seconds` evenly.
    two = make_y4m(tmp_path / "two.y4m", [ADULT_A, CHILD_A], seconds=2, fps=5)
    assert read_y4m_info(two).frames == 10
    with pytest.raises(ValueError):
        make_y4m(tmp_path / "odd.y4m", OBAMA, seconds=1, size=(641, 480))
    with pytest.raises(FileNotFoundError):
        make_y4m(tmp_path / "missing.y4m", tmp_path / "nope.jpg", seconds=1)


# A page on a loopback origin served by Playwright itself (no server, no network): getUserMedia
# needs a secure context, which a data: URL is not (its origin is opaque), while http://127.0.0.1
# is. The page shows its own camera in #remote-video, so the same helpers as the call tests apply.
_CAMERA_PAGE = """<!doctype html><meta charset="utf-8"><title>camera</title>
<video id="remote-video" autoplay playsinline muted></video>
<script>
(async () => {
  document.body.dataset.phase = 'starting';
  try {
    const stream = await navigator.mediaDevices.getUserMedia(
      {audio: true, video: {width: 640, height: 480}});
    const s = stream.getVideoTracks()[0].getSettings();
    document.body.dataset.size = s.width + 'x' + s.height;
    document.body.dataset.audio = String(stream.getAudioTracks().length);
    document.querySelector('#remote-video').srcObject = stream;
    document.body.dataset.phase = 'camera';
  } catch (e) {
    console.error('getUserMedia failed', e.name, e.message);
    document.body.dataset.phase = 'failed';
  }
})();
</script>"""


async def test_chromium_fake_camera_delivers_frames(tmp_path: Path) -> None:
    clip = make_y4m(tmp_path / "obama.y4m", OBAMA, seconds=4)
    async with launch_chromium(clip, ARTIFACTS) as chromium:
        page = await chromium.new_page("camera")
        await page.route(
            "http://127.0.0.1/camera",
            lambda route: route.fulfill(body=_CAMERA_PAGE, content_type="text/html"),
        )
        await page.goto("http://127.0.0.1/camera", timeout=15_000)
        assert await page.evaluate("window.isSecureContext")
        await wait_for_body_data(page, "phase", "camera", timeout_s=15)
        data = await page.evaluate("() => Object.assign({}, document.body.dataset)")
        assert data["size"] == "640x480", data
        assert data["audio"] == "1", data

        stats = await remote_video_progress(page, timeout_s=15, min_frames=5)
        assert (stats["width"], stats["height"]) == (640, 480), stats
        await chromium.screenshot(page, "fake-camera")

        # A wait that cannot succeed fails with the dataset and console in its message.
        with pytest.raises(AssertionError, match=r"phase.*camera"):
            await wait_for_body_data(page, "phase", "never", timeout_s=0.5)
        assert (await video_stats(page, "#no-such-video")) is None
    assert (ARTIFACTS / "console.log").exists()
