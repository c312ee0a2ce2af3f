"""Issue 11, network change: the guardian's address changes mid-call (Wi-Fi to 4G, a new DHCP
lease); the page notices the dead media path and reconnects by itself, the doctor gets picture
again within 20 s without any click, and the event log shows the gap.

The guardian's Chromium runs in its own network namespace (tests/netns.py) joined to the test's
by a veth pair; the node listens on the test's end of it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bench.chromium import remote_video_progress, wait_for_body_data
from tests.netns import call_with_guardian_apart

from .node_fixtures import Node

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "network_change"
NODE_IP = "10.77.0.1"
BACK_WITHIN_S = 20.0

pytestmark = pytest.mark.browser


async def _events_after(node: Node, cid: str, kinds: set[str], since: int,
                        timeout_s: float) -> list[dict]:
    """The events from index `since` on, once one of `kinds` is among them (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        events = (await node.events(cid))[since:]
        if any(e["kind"] in kinds for e in events):
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"none of {sorted(kinds)} within {timeout_s:.0f} s; events "
                                 f"since the change: {[(e['kind'], e['data']) for e in events]}")
        await asyncio.sleep(0.2)


async def test_guardian_address_changes_mid_call_and_the_call_comes_back(tmp_path: Path) -> None:
    async with call_with_guardian_apart(tmp_path, ARTIFACTS / "change", NODE_IP, "10.77.0.2",
                                        "tcv", seconds=6) as call:
        node, guardian, doctor = call.node, call.guardian, call.doctor
        await wait_for_body_data(doctor, "peer", "connected")
        await remote_video_progress(doctor, timeout_s=30)
        await remote_video_progress(guardian, timeout_s=30)
        before = len(await node.events(call.cid))

        # The guardian's network changes: its old address is gone, a new one on another
        # network, reaching the node through a gateway on the node's side.
        call.net.add_host_address("10.77.1.1/24")
        call.net.set_address("10.77.1.2/24", gateway="10.77.1.1")
        changed = time.monotonic()
        await guardian.evaluate("console.info('address changed')")

        events = await _events_after(
            node, call.cid, {"participant.media_restored", "participant.rejoined"}, before,
            BACK_WITHIN_S)
        left = BACK_WITHIN_S - (time.monotonic() - changed)
        await remote_video_progress(doctor, timeout_s=max(left, 1.0))
        took = time.monotonic() - changed
        await remote_video_progress(guardian, timeout_s=10)
        await wait_for_body_data(guardian, "phase", "incall")
        await call.guardian_browser.screenshot(guardian, "guardian-after-change")
        await call.doctor_browser.screenshot(doctor, "doctor-after-change")

    kinds = [e["kind"] for e in events]
    back = next(k for k in kinds if k in ("participant.media_restored", "participant.rejoined"))
    assert "participant.lost" in kinds and kinds.index("participant.lost") < kinds.index(back), \
        kinds
    assert took <= BACK_WITHIN_S, f"the doctor had picture again after {took:.1f} s"
    print(f"network change: doctor's picture back after {took:.1f} s via {back}; {kinds}")


async def test_media_path_dies_with_the_socket_up_and_is_renegotiated(tmp_path: Path) -> None:
    """UDP between the guardian and the node stops (a firewall, a NAT that lost its mapping) while
    the signaling socket lives: the page makes a new peer connection on the same socket, and the
    log shows `participant.lost` then `participant.media_restored`, with no rejoin."""
    async with call_with_guardian_apart(tmp_path, ARTIFACTS / "udp", "10.76.0.1", "10.76.0.2",
                                        "tcu") as call:
        node, guardian, doctor = call.node, call.guardian, call.doctor
        await remote_video_progress(doctor, timeout_s=30)
        before = len(await node.events(call.cid))

        call.net.block_udp(True)
        blocked = time.monotonic()
        await _events_after(node, call.cid, {"participant.lost"}, before, BACK_WITHIN_S)
        noticed = time.monotonic() - blocked
        call.net.block_udp(False)
        events = await _events_after(node, call.cid, {"participant.media_restored"}, before,
                                     BACK_WITHIN_S)
        await remote_video_progress(doctor, timeout_s=15)
        took = time.monotonic() - blocked
        await wait_for_body_data(guardian, "phase", "incall")
        notices = await guardian.eval_on_selector_all(
            "#notices li[data-code]", "els => els.map(e => e.dataset.code)")

    kinds = [e["kind"] for e in events]
    lost = next(e for e in events if e["kind"] == "participant.lost")
    assert "renegotiated" in lost["data"]["reason"], lost
    assert kinds.index("participant.lost") < kinds.index("participant.media_restored"), kinds
    assert "participant.rejoined" not in kinds, kinds
    assert "renegotiating" in notices, notices  # the person was told
    assert noticed < 10, f"the page took {noticed:.1f} s to notice the dead media path"
    print(f"UDP blocked: noticed after {noticed:.1f} s, picture back {took:.1f} s after the "
          f"block (UDP restored at {noticed:.1f} s); {kinds}")
