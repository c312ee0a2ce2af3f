"""The harness's getStats arithmetic: counters across a reconnect, rates, window summaries."""

from __future__ import annotations

from bench.webrtc_stats import Window, first_time, rates, total


def sample(t: float, frames: int, sent: int, pcs: int = 1) -> dict:
    return {"t": t, "at": 100 + t, "pcs": pcs, "vin": {"framesDecoded": frames},
            "vout": {"bytesSent": sent}}


def test_counters_add_up_across_a_new_peer_connection() -> None:
    samples = [sample(0, 0, 0), sample(1, 15, 0), sample(2, 30, 0),
               sample(3, 5, 0, pcs=2), sample(4, 20, 0, pcs=2)]  # counters restart at 3
    assert total(samples, "vin.framesDecoded") == 30 + 5 + 15
    assert total(samples, "vin.missing") == 0


def test_sending_rate_over_one_second_and_the_first_time_it_passes() -> None:
    # 0.5 s samples; 125 kB in the first half second (a key frame), then 25 kB per 0.5 s.
    sent = [0, 125_000, 150_000, 175_000, 200_000, 225_000]
    samples = [sample(i / 2, 0, b) for i, b in enumerate(sent)]
    kbps = rates(samples, "vout.bytesSent", 8 / 1000)
    assert [round(v) for _, v in kbps] == [1200, 400, 400, 400]
    assert first_time(kbps, lambda v: v <= 400, after=0) == 101.5


def test_window_receiving_fps() -> None:
    samples = [sample(t, 15 * t, 0) for t in range(11)]
    window = Window.of(samples, 102, 108)
    assert window.receiving()["fps"] == 15.0
    assert len(window.samples) == 7
