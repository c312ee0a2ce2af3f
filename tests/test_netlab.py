"""netlab: namespaces joined through a router, and the TUN forwarder that stands in for netem.

Real namespaces, veth pairs, tc filters and a real forwarder process; UDP probes measure what
the link does. Bounds leave room for a busy 2-core machine but fail if an impairment is not
applied (or applied twice), or if the forwarder cannot keep up.
"""

from __future__ import annotations

import os

import pytest

from netlab import Impairment, Lab, Shaper
from netlab.link import Link
from netlab.probe import udp_rtt_ms, udp_stream


@pytest.fixture
def lab():
    with Lab(["node", "doctor"]) as lab:
        yield lab


def test_lab_routes_between_leaves_and_tears_down() -> None:
    with Lab(["node", "doctor", "guardian"]) as lab:
        holders = [leaf.ns.pid for leaf in lab.leaves.values()] + [lab.router.pid]
        assert udp_rtt_ms(lab, "doctor", "guardian", rounds=20)["n"] == 20
        assert udp_rtt_ms(lab, "guardian", "node", rounds=20)["n"] == 20
    for pid in holders:
        assert not os.path.exists(f"/proc/{pid}"), f"namespace holder {pid} outlived the lab"


def test_forwarder_adds_little_delay_and_keeps_up_with_3_mbit_of_small_packets(lab) -> None:
    plain = udp_rtt_ms(lab, "doctor", "node", rounds=200)
    with Shaper(lab, "doctor", "down", Impairment()) as down, \
            Shaper(lab, "doctor", "up", Impairment()) as up:
        shaped = udp_rtt_ms(lab, "doctor", "node", rounds=200)
        stream = udp_stream(lab, "node", "doctor", kbit_per_s=3000, seconds=3, size=200)
        forwarded = down.stats()
        assert forwarded["packets"] >= stream.sent  # the stream did go through it
        assert up.stats()["packets"] >= 200
    assert shaped["p50"] < plain["p50"] + 2.0, (plain, shaped)
    assert stream.loss == 0, (stream, forwarded)
    assert stream.kbit_per_s > 2700, stream
    assert stream.one_way_ms["p50"] < 5, stream


def test_delay_loss_and_rate_are_applied_and_the_rate_changes_at_run_time(lab) -> None:
    with Shaper(lab, "doctor", "up", Impairment(delay_ms=40)):
        rtt = udp_rtt_ms(lab, "doctor", "node", rounds=20)
    assert 40 <= rtt["p50"] < 55, rtt  # one way only

    with Shaper(lab, "doctor", "down", Impairment(loss=0.2)):
        lossy = udp_stream(lab, "node", "doctor", kbit_per_s=800, seconds=2, size=200)
    assert 0.12 < lossy.loss < 0.28, lossy

    with Shaper(lab, "doctor", "down", Impairment(rate_kbit=1000, queue_ms=200)) as shaper:
        fast = udp_stream(lab, "node", "doctor", kbit_per_s=2000, seconds=3, size=1000)
        shaper.set(rate_kbit=300)
        slow = udp_stream(lab, "node", "doctor", kbit_per_s=2000, seconds=3, size=1000)
        stats = shaper.stats()
    assert 850 < fast.kbit_per_s < 1100, fast
    assert 250 < slow.kbit_per_s < 340, slow
    assert stats["queue_drops"] > 0 and stats["max_queue_ms"] <= 200, stats
    # Bounded: a full 200 ms buffer plus one packet's 27 ms (and scheduling on a busy machine);
    # an unbounded queue would hold ~2.5 s after 3 s of 2000 kbit/s into 300.
    assert slow.one_way_ms["max"] < 500, slow


def test_link_queue_is_bounded_in_time() -> None:
    link = Link(rate_kbit=100, queue_ms=100)  # a 1250-byte packet takes 100 ms
    assert link.offer(1250, now=0.0) == pytest.approx(0.1)
    assert link.offer(1250, now=0.0) == pytest.approx(0.2)  # waits 100 ms: still accepted
    assert link.offer(1250, now=0.0) is None  # would wait 200 ms
    assert link.counters.queue_drops == 1
