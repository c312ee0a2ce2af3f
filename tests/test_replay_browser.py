"""The auditor's replay page in real headless Chromium: find the consultation, play both sides."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.chromium import launch_chromium, wait_for_body_data
from bench.faces import OBAMA, make_y4m
from core.auth import Role

from .node_fixtures import Node, node_settings, start_node
from .recording_helpers import recorded_call

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "replay"

pytestmark = pytest.mark.browser

_TIMES = """() => ['doctor', 'guardian'].map((r) => {
  const v = document.getElementById('video-' + r);
  return {t: v.currentTime, w: v.videoWidth, ready: v.readyState, paused: v.paused,
          at: Number(v.dataset.start) + v.currentTime};
})"""


@pytest.fixture
async def rec_node(tmp_path):
    async with start_node(node_settings(tmp_path / "node", recording_segment_s=3.0)) as n:
        yield n


@pytest.mark.timeout(120)
async def test_auditor_replays_both_sides_in_sync(rec_node: Node, clips, tmp_path) -> None:
    node = rec_node
    cid = await recorded_call(node, clips, 7.0)
    camera = make_y4m(tmp_path / "cam.y4m", OBAMA, seconds=1)
    token = node.token(Role.AUDITOR, "audit-browser")
    async with launch_chromium(camera, ARTIFACTS) as browser:
        page = await browser.new_page("auditor")
        await page.goto(f"{node.url}/replay#token={token}")
        await wait_for_body_data(page, "view", "search")
        await page.click(f"button[data-cid='{cid}']")
        await wait_for_body_data(page, "view", "detail")
        await page.click("#play-btn")
        await wait_for_body_data(page, "playing", "1")
        deadline = time.monotonic() + 20
        first = None
        while True:
            times = await page.evaluate(_TIMES)
            if first is None and all(x["w"] > 0 and x["t"] > 0.3 for x in times):
                first = times
            elif first is not None and all(
                    x["t"] > f["t"] + 1.0 for x, f in zip(times, first, strict=True)):
                break
            assert time.monotonic() < deadline, f"playback did not advance: {times}"
            await page.wait_for_timeout(200)
        # Both sides on one clock: their positions on it agree (the page resyncs a side that
        # drifts by more than 0.35 s; the files themselves agree to 0.1 s, test_recording.py).
        doctor, guardian = await page.evaluate(_TIMES)
        assert abs(doctor["at"] - guardian["at"]) < 0.4, (doctor, guardian)
        await browser.screenshot(page, "replay-playing")
        await page.click("#verify-btn")
        await wait_for_body_data(page, "verified", "ok")
        # Jump to an event in the middle of the call (the first segment closing): both videos
        # go to that moment.
        if await page.evaluate("document.body.dataset.playing") == "1":
            await page.click("#play-btn")  # pause
        await wait_for_body_data(page, "playing", "0")
        item = page.locator("#events li[data-kind='recording.segment']").first
        at = float(await item.get_attribute("data-t"))
        assert 1.0 < at < 6.0, at
        await item.locator("button").click()
        deadline = time.monotonic() + 10
        while True:
            times = await page.evaluate(_TIMES)
            if all(abs(x["at"] - at) < 0.5 for x in times):
                break
            assert time.monotonic() < deadline, f"the videos did not go to {at} s: {times}"
            await page.wait_for_timeout(100)
        await browser.screenshot(page, "replay-after-jump")

    events = [e for e in await node.events(cid) if e["actor"] == "auditor:audit-browser"]
    kinds = {e["kind"] for e in events}
    assert {"recording.opened", "recording.play", "recording.access",
            "recording.verified"} <= kinds
