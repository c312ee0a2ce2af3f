"""signaling/pacer.py: a relayed key frame is spread at the paced rate between two real aiortc
peers, and nothing but the sender's own media ever waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from typing import Any

import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamTrack

from bench.identity import until
from signaling import ice, pacer, passthrough

from .offers import negotiate

RATE_BPS = 400_000
KEY_FRAME = 30_000  # bytes: what a 640x480 key frame can be, over twice a 250 ms buffer at 400k
SMALL = 1_000


class Frames(MediaStreamTrack):
    """Encoded VP8-sized frames at 30 fps: one large, then small ones; calls `on_start` from the
    sender's task at its first frame, as the relay track does."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.on_start: Any = None

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.count == 0 and self.on_start is not None:
            self.on_start()
        else:
            await asyncio.sleep(1 / 30)
        size = KEY_FRAME if self.count == 5 else SMALL
        packet = av.Packet(bytes([0x10]) + bytes(size - 1))
        packet.pts = packet.dts = self.count * 3000
        packet.time_base = Fraction(1, 90000)
        self.count += 1
        return packet


@asynccontextmanager
async def call(paced: bool) -> AsyncIterator[tuple[RTCRtpSender, list[tuple[float, int]],
                                                   pacer.Pacer]]:
    """`a` sends `Frames` to `b`, paced at RATE_BPS or not; `b`'s RTP arrivals (when, size)."""
    ice.use_host_addresses(["127.0.0.1"])
    a, b = RTCPeerConnection(), RTCPeerConnection()
    arrivals: list[tuple[float, int]] = []
    pace = pacer.Pacer(lambda: RATE_BPS)

    def on_track(track: Any) -> None:
        for transceiver in b.getTransceivers():
            if transceiver.receiver.track is track:
                passthrough.install(transceiver.receiver, lambda packet: None)  # no decoding
                passthrough.on_rtp(transceiver.receiver, lambda packet: arrivals.append(
                    (time.monotonic(), len(packet.payload))))

    b.on("track", on_track)
    try:
        track = Frames()
        sender = a.addTrack(track)
        if paced:
            track.on_start = lambda: pacer.install(sender, pace)
        await negotiate(a, b)
        yield sender, arrivals, pace
    finally:
        await a.close()
        await b.close()
        ice.use_host_addresses([])


def key_frame_span_s(arrivals: list[tuple[float, int]]) -> float:
    """From the first to the last packet of the large frame (the run of full-size packets)."""
    big = [at for at, size in arrivals if size > SMALL + 100]
    return big[-1] - big[0]


@pytest.mark.parametrize("paced", [True, False])
async def test_a_key_frame_is_spread_at_the_paced_rate(paced: bool) -> None:
    async with call(paced) as (_, arrivals, pace):
        await until(lambda: sum(size > SMALL + 100 for _, size in arrivals) >= 23, 15,
                    "the large frame")
    expected = KEY_FRAME / (pacer.PACE_FACTOR * RATE_BPS / 8) - pacer.BURST_S  # 0.22 s
    span = key_frame_span_s(arrivals)
    if paced:
        assert 0.8 * expected <= span <= 2 * expected, span
        assert pace.held > 10
    else:
        assert span < expected / 4, span


async def test_what_is_not_the_senders_own_media_goes_at_once() -> None:
    """RTCP and retransmissions come from the shared transport's receive path: a wait there would
    hold every incoming packet behind it."""
    async with call(True) as (sender, _, pace):
        await until(lambda: isinstance(sender.transport, pacer.PacedTransport), 10, "the pacer")
        pace.sent(10 * KEY_FRAME)  # far behind: the sender's own next packet would wait
        assert pace.wait_s(time.monotonic()) == pytest.approx(pacer.MAX_WAIT_S)
        # A NACKed packet, as aiortc's RTCP handler resends it (RTX), from this test's task.
        history = sender._RTCRtpSender__rtp_history
        sequence = next(iter(history.values())).sequence_number
        started = time.monotonic()
        await asyncio.wait_for(sender._retransmit(sequence), 1.0)
        assert time.monotonic() - started < 0.05


def test_a_backlog_from_a_higher_rate_is_owed_for_at_most_max_wait_at_the_new_one() -> None:
    rate = [2_000_000]
    pace = pacer.Pacer(lambda: rate[0])
    now = time.monotonic()
    assert pace.wait_s(now) == 0.0
    pace.sent(100_000)  # half a second at 2 Mbit/s x 2.5 ...
    assert pace.wait_s(now) == pytest.approx(100_000 / (pacer.PACE_FACTOR * 250_000)
                                             - pacer.BURST_S)
    rate[0] = 40_000  # ... then the downlink's estimate falls: not 8 s of silence
    assert pace.wait_s(now) == pytest.approx(pacer.MAX_WAIT_S)
    assert pace.wait_s(now + pacer.MAX_WAIT_S) == 0.0


def test_install_refuses_a_sender_without_the_private_parts() -> None:
    class Renamed:
        pass

    with pytest.raises(RuntimeError, match="check it against the installed aiortc"):
        pacer.install(Renamed(), pacer.Pacer(lambda: RATE_BPS))  # type: ignore[arg-type]
