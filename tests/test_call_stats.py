"""When a participant's link counts as poor for ops, and when it has recovered."""

from __future__ import annotations

from signaling.call_stats import NetworkWatch, poor_network

GOOD = {"video": {"fps": 30.0, "kbps": 900.0}, "audio": {"fps": 50.0, "kbps": 40.0},
        "network": {"video": {"rtt_ms": 40.0, "loss_percent": 0.0, "jitter_ms": 3.0},
                    "audio": {"rtt_ms": 41.0, "loss_percent": 0.0}}}


def test_poor_network_names_what_is_poor() -> None:
    assert poor_network(GOOD) == []
    bad = {**GOOD, "video": {"fps": 8.0, "kbps": 100.0},
           "network": {"video": {"rtt_ms": 650.0, "loss_percent": 12.5}}}
    assert poor_network(bad) == ["video 8.0 fps", "video loss 12.5%", "video RTT 650.0 ms"]
    # Exactly at the limits is not poor; no network figures yet is not poor either.
    edge = {"video": {"fps": 10.0}, "network": {"video": {"rtt_ms": 400.0, "loss_percent": 5.0}}}
    assert poor_network(edge) == []
    assert poor_network({"video": {"fps": 30.0}}) == []


def test_one_bad_reading_is_no_alert_two_are() -> None:
    watch = NetworkWatch(after=2)
    assert [watch.observe(p) for p in ([], ["x"], [], ["x"], [])] == [None] * 5
    assert watch.observe(["loss"]) is None and watch.observe(["rtt"]) == "poor"
    assert watch.observe(["loss"]) is None  # still poor: said once
    assert watch.observe([]) is None and watch.observe(["loss"]) is None  # one good reading
    assert watch.observe([]) is None and watch.observe([]) == "recovered"
