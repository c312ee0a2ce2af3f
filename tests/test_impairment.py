"""A call through the node on a shaped link, in real Chromium: the short version of bench.impair.

Profile A (the doctor's downlink 500 kbit/s, 40 ms, 1 % loss) for a 30 s window, through the
node only (the direct reference call is the benchmark's job). The bounds leave room for a busy
2-core machine and for the first seconds' start-up in the window; a relay that does not carry the
doctor's downlink back to the guardian (measured before issue 11's fixes: 5.8 fps, 30 % of the
audio concealed) or that backs up, drops the doctor or freezes fails them: see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.impair import PROFILES, make_clips, run_one
from netlab import Lab

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "impairment"

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]


async def test_call_through_the_node_holds_up_on_a_shaped_doctor_downlink(tmp_path: Path) -> None:
    clips = make_clips(tmp_path)
    # 30 s: a relay whose sender outruns the doctor's link collapsed some 15-20 s in.
    # The window opens 10 s in, as the benchmark's: the start-up is bounded on its own below.
    args = argparse.Namespace(seconds=30.0, warmup=10.0)
    with Lab(["node", "doctor", "guardian"]) as lab:
        result = await run_one(lab, PROFILES["A"], "relay", clips, args, ARTIFACTS)
    (ARTIFACTS / "result.json").write_text(json.dumps(result, indent=2))
    assert "error" not in result, result
    summary = {k: v for k, v in result.items() if k != "timeline"}

    assert not result["dropped"], f"a participant dropped: {result['incidents']}"
    # Start-up on a slow downlink is where the relay still trails a direct call (~2 s there;
    # 5-7 s measured through the node on this profile): bounded, not hidden.
    assert result["join_to_video_s"] < 15, summary
    doctor = result["doctor_receives"]
    assert doctor["fps"] >= 10, summary  # 15 sent; direct: 14.6-15
    # Frames all along the window, not a picture that froze for good half-way.
    slices = [row[4] for row in result["timeline"]]
    assert all(fps is not None and fps >= 1 for fps in slices), (
        f"the doctor's picture stopped; [t, guardian sends kbit/s, its target, doctor receives "
        f"kbit/s, doctor fps, doctor rtt ms] every 2 s: {result['timeline']}")
    assert doctor["rtt_ms_median"] is not None and doctor["rtt_ms_median"] < 1000, summary
    assert doctor["rtt_ms_max"] < 2000, summary
    assert doctor["audio_concealed_percent"] < 10, summary  # direct: ~1
    # The guardian's own downlink is clean.
    assert result["guardian_receives"]["fps"] >= 10, summary
    # The doctor's browser answers the node's video with transport-wide feedback, and the node
    # reads a queue from it (signaling/sendside.py): none of that shows without it.
    view = result["node_view_of_doctor"]
    assert view["with_queue"] >= view["readings"] // 2 > 0, summary
    assert view["queue_ms_median"] < 400, summary
    # Memory: no backlog growing in the node (the window is short: a generous slope).
    assert result["node_rss_mb"]["growth_mb_per_min"] < 20, summary
