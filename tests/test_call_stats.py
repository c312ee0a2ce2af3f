"""When a participant's link counts as poor for ops, and when it has recovered."""

from __future__ import annotations

from signaling.call_stats import NetworkWatch, network, poor_network

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


def test_a_participant_who_gets_fewer_frames_than_there_are_is_poor() -> None:
    sent = {"video": {"fps": 3.0, "kbps": 90.0, "source_fps": 15.0}}
    assert poor_network({**GOOD, "sent": sent}) == ["receives video 3.0 fps"]
    # Nothing to send them (the other side's camera is off or absent): not their link's fault.
    idle = {"video": {"fps": 0.0, "kbps": 0.0, "source_fps": 0.0}}
    assert poor_network({**GOOD, "sent": idle}) == []


async def test_loss_is_a_percentage_of_rtcp_fraction_lost() -> None:
    """RTCP carries loss as a fraction of 256: 64 is 25 %, not 6400 %."""
    from datetime import datetime

    from aiortc.stats import RTCRemoteInboundRtpStreamStats, RTCStatsReport

    report = RTCStatsReport()
    report.add(RTCRemoteInboundRtpStreamStats(
        timestamp=datetime.now(), type="remote-inbound-rtp", id="r", ssrc=1, kind="video",
        transportId="t", packetsReceived=300, packetsLost=100, jitter=0,
        roundTripTime=0.08, fractionLost=64))

    class Peer:
        async def getStats(self) -> RTCStatsReport:
            return report

    assert (await network(Peer()))["video"] == {"rtt_ms": 80.0, "loss_percent": 25.0}
    # A receiver report that echoes no sender report yet has no round trip: not a crash, which
    # would end the room's statistics task for the rest of the call.
    report["r"].roundTripTime = None
    assert (await network(Peer()))["video"] == {"loss_percent": 25.0}
