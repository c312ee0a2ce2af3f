"""Issue 11 in real Chromium: the pre-call check (camera preview, microphone level, speaker test,
connection test with numbers and advice), then the in-call quality badges, the other side's
report travelling through the node, and the ops view of what is delivered."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chromium import (
    _console_tail,
    launch_chromium,
    remote_video_progress,
    video_stats,
    wait_for_body_data,
)
from bench.faces import ADULT_A, CHILD_A, OBAMA, make_y4m, side_by_side
from core.auth import Role
from tests.netns import call_with_guardian_apart, node_on, veth_peer

from .node_fixtures import Node

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "precall"

pytestmark = pytest.mark.browser


async def _wait_js(page, expression: str, what: str, timeout_s: float = 15.0):
    """Wait for a JS expression to be truthy; fail saying what was awaited and what the page did."""
    try:
        handle = await page.wait_for_function(expression, timeout=timeout_s * 1000, polling=100)
        return await handle.json_value()
    except Exception as exc:
        data = await page.evaluate("() => Object.assign({}, document.body.dataset)")
        raise AssertionError(f"{what} not within {timeout_s:.0f} s ({type(exc).__name__}); "
                             f"dataset: {data}\nconsole:\n{_console_tail(page)}") from None


async def test_precall_check_then_quality_of_the_other_side(node: Node, tmp_path: Path) -> None:
    booking = await node.book()
    cid = booking.consultation_id
    doctor_cam = make_y4m(tmp_path / "doctor.y4m", OBAMA, seconds=6)
    guardian_cam = make_y4m(tmp_path / "guardian.y4m", side_by_side(ADULT_A, CHILD_A), seconds=6)
    doctor_link = booking.doctor_link.replace(node.settings.public_url, node.url)
    guardian_link = booking.guardian_link.replace(node.settings.public_url, node.url)

    async with launch_chromium(guardian_cam, ARTIFACTS / "guardian") as g_browser, \
            launch_chromium(doctor_cam, ARTIFACTS / "doctor") as d_browser:
        guardian = await g_browser.new_page("guardian")
        doctor = await d_browser.new_page("doctor")
        await guardian.goto(guardian_link)
        await doctor.goto(doctor_link)
        await wait_for_body_data(guardian, "phase", "prejoin")

        # The check: camera preview, a microphone level (Chromium's fake device beeps), the
        # connection test with numbers and advice.
        await guardian.click("#precall-start-btn")
        await wait_for_body_data(guardian, "precall", "done")
        preview = await remote_video_progress(guardian, timeout_s=10, selector="#precall-video")
        assert preview["width"] == 640, preview
        peak = await _wait_js(
            guardian, "() => Number(document.body.dataset.precallMicPeak || 0) > 0.005 && "
            "document.body.dataset.precallMicPeak", "a microphone level above 0.005")
        await wait_for_body_data(guardian, "precallNet", "done", timeout_s=25)
        net = await guardian.evaluate("() => Object.assign({}, document.body.dataset)")
        rtt, down, up = (int(net[k]) for k in ("precallRtt", "precallDown", "precallUp"))
        assert 0 <= rtt < 200 and down > 1000 and up > 1000, net
        assert net["precallAdvice"] in ("good", "fair", "poor"), net
        advice = await guardian.inner_text("#precall-advice")
        assert "网络" in advice and "connection" in advice.lower(), advice
        assert (await guardian.inner_text("#precall-rtt")).endswith("ms")

        # The speaker test: a tone, then the person says whether they heard it.
        await guardian.click("#precall-tone-btn")
        await wait_for_body_data(guardian, "speaker", "asked", timeout_s=5)
        await guardian.click("#precall-heard-yes")
        await wait_for_body_data(guardian, "speaker", "heard")
        await g_browser.screenshot(guardian, "precall-done")

        # Join: the same camera stream goes into the call.
        await guardian.check("#consent-check")
        await guardian.click("#join-btn")
        await wait_for_body_data(guardian, "state", "waiting")
        await doctor.click("#join-btn")
        await wait_for_body_data(doctor, "peer", "connected")
        await remote_video_progress(doctor, timeout_s=30)
        assert (await video_stats(guardian, "#precall-video"))["hasStream"] is False

        # Each page rates its own reception; the doctor sees the guardian's, via the node.
        await wait_for_body_data(guardian, "quality", ["good", "fair", "poor"], timeout_s=20)
        await wait_for_body_data(doctor, "peerQuality", ["good", "fair", "poor"], timeout_s=20)
        peer = await doctor.evaluate(
            "() => Object.assign({text: document.querySelector('#quality-peer').innerText,"
            " hidden: document.querySelector('#quality-peer').hidden},"
            " document.querySelector('#quality-peer').dataset)")
        assert not peer["hidden"] and float(peer["fps"]) > 0, peer
        assert "患者方网络" in peer["text"] and "connection is" in peer["text"], peer
        assert await guardian.evaluate("document.querySelector('#quality-self').hidden") is False
        await d_browser.screenshot(doctor, "doctor-quality")
        # Ops see what is delivered to the guardian (the live state the ops page reads).
        live = (await node.ctx.live.live_consultations()).get(cid)
        delivered = live["participants"]["guardian"].get("delivered") if live else None
        assert delivered and delivered["level"] in ("good", "fair", "poor"), live
        assert delivered["fps"] >= 0 and "freezes" in delivered, delivered
        ops = await d_browser.new_page("ops")
        await ops.goto(f"{node.url}/ops#token={node.token(Role.OPS, 'ops-1')}")
        shown = await _wait_js(
            ops, f"() => [...document.querySelectorAll('tr[data-cid=\"{cid}\"] .delivered')]"
            ".filter(e => e.dataset.level).map(e => e.textContent).join(' | ')",
            "the delivered figures on the ops page")
        assert "fps" in shown and "卡顿 freezes" in shown, shown
        await d_browser.screenshot(ops, "ops-delivered")
    assert float(peak) > 0.005


async def test_precall_on_a_slow_link_measures_it_and_advises(tmp_path: Path) -> None:
    """The guardian's downlink is 400 kbit/s (a token bucket on the veth towards its namespace):
    the connection test measures about that, and the advice says what to do, in both languages."""
    camera = make_y4m(tmp_path / "guardian.y4m", side_by_side(ADULT_A, CHILD_A), seconds=2)
    with veth_peer("10.78.0.1/24", "10.78.0.2/24", name="tcp") as net:
        net.shape("400kbit")
        async with node_on("10.78.0.1", tmp_path / "node") as node:
            booking = await node.book()
            link = booking.guardian_link.replace(node.settings.public_url, node.url)
            secure = f"--unsafely-treat-insecure-origin-as-secure={node.url}"
            async with launch_chromium(camera, ARTIFACTS / "slow", prefix=net.prefix,
                                       extra_args=[secure]) as browser:
                page = await browser.new_page("guardian")
                await page.goto(link)
                await page.click("#precall-start-btn")
                await wait_for_body_data(page, "precallNet", ["done", "failed"], timeout_s=30)
                data = await page.evaluate("() => Object.assign({}, document.body.dataset)")
                advice = await page.inner_text("#precall-advice")
                await browser.screenshot(page, "precall-slow")
    assert data["precallNet"] == "done", data
    down = int(data["precallDown"])
    assert 200 <= down <= 600, f"measured {down} kbit/s down on a 400 kbit/s link: {data}"
    assert int(data["precallUp"]) > 1000, data  # only the downlink is shaped
    assert data["precallAdvice"] == "poor", data
    assert "网络较慢" in advice and "Slow connection" in advice, advice


async def test_doctor_sees_that_the_guardians_connection_is_weak(tmp_path: Path) -> None:
    """Mid-call the guardian's downlink drops to 40 kbit/s: its page rates its own reception
    weak, and the doctor's page says so of the patient side, from the guardian's reports."""
    async with call_with_guardian_apart(tmp_path, ARTIFACTS / "weak", "10.79.0.1", "10.79.0.2",
                                        "tcq") as call:
        guardian, doctor = call.guardian, call.doctor
        await remote_video_progress(guardian, timeout_s=30)
        await wait_for_body_data(doctor, "peerQuality", ["good", "fair", "poor"], timeout_s=20)
        call.net.shape("40kbit")  # below what audio and the smallest picture need
        await wait_for_body_data(guardian, "quality", ["fair", "poor"], timeout_s=30)
        await wait_for_body_data(doctor, "peerQuality", ["fair", "poor"], timeout_s=15)
        text = await doctor.inner_text("#quality-peer")
        await call.doctor_browser.screenshot(doctor, "doctor-sees-weak-guardian")
    assert ("患者方网络较差" in text and "connection is weak" in text) or \
        ("患者方网络一般" in text and "connection is fair" in text), text
