"""The recorder's timing and cutting, driven through real MediaSources with chosen arrivals.

A sender's capture clock, its sender reports and the arrival of each packet are set here, so a
late start, a backlog or a moved clock can be replayed exactly; the recorder sees them through
the same MediaSource and subscription as in a call. (tests/test_recording_sync.py measures the
same on real calls.)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import pytest

from recorder.participant import MIN_SEGMENT_MS, REPORT_WAIT_S, ParticipantRecorder
from recorder.timing import REANCHOR_MS, REANCHOR_WINDOW_MS, Offset
from signaling.media import MediaSource

NTP_BASE = 3_900_000_000  # seconds on the sender's NTP clock when its capture started
KEY = b"\x10\x02\x00\x9d\x01\x2a\x80\x02\xe0\x01"  # a VP8 key frame header (640x480)
DELTA = b"\x11\x02\x00"


@dataclass
class Seg:
    role: str
    seq: int
    t_start_ms: int
    boundary_ms: int
    packets: list[tuple[str, int, bytes]] = field(default_factory=list)
    error: str | None = None

    def write(self, kind: str, data: bytes, t_ms: int) -> None:
        self.packets.append((kind, t_ms, data))

    @property
    def end_ms(self) -> int:
        return max(t for _, t, _ in self.packets)


class Recording:
    """What ParticipantRecorder calls on its consultation, keeping the segments in memory."""

    def __init__(self, epoch_mono: float, segment_ms: int) -> None:
        self.epoch_mono = epoch_mono
        self.segment_ms = segment_ms
        self.stopped = False
        self.failed: str | None = None
        self.open: list[Seg] = []
        self.closed: list[Seg] = []
        self.gaps: list[tuple[int, int]] = []

    def open_segment(self, role: str, seq: int, t_ms: int) -> Seg:
        seg = Seg(role, seq, t_ms, (t_ms // self.segment_ms + 1) * self.segment_ms)
        self.open.append(seg)
        return seg

    def finish(self, seg: Seg) -> None:
        self.closed.append(seg)

    def gap(self, role: str, from_ms: int, to_ms: int) -> None:
        self.gaps.append((from_ms, to_ms))

    def fail(self, error: str) -> None:
        self.failed = error


class Sender:
    """A participant's two streams: packets captured on one clock, published with arrivals."""

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch
        self.sources = {"audio": MediaSource("audio", "g/audio"),
                        "video": MediaSource("video", "g/video")}
        self.upstreams = {kind: source.attach(lambda: True)
                          for kind, source in self.sources.items()}
        self.rtp_origin = {"audio": 1234, "video": 98765}  # the sender's random RTP origins

    def packet(self, kind: str, capture_s: float, arrival_s: float, key: bool = False) -> None:
        rate = 90000 if kind == "video" else 48000
        data = (KEY if key else DELTA) if kind == "video" else b"\xfc\xff\xfe"
        packet = av.Packet(data)
        packet.pts = packet.dts = round(capture_s * rate)  # the receiver's frame timeline
        packet.time_base = Fraction(1, rate)
        self.sources[kind].publish(packet, self.epoch + arrival_s)

    def report(self, kind: str, capture_s: float, clock_step_s: float = 0.0) -> None:
        """A sender report: RTP time of `capture_s` was NTP_BASE + capture_s (+ a clock step)."""
        rate = 90000 if kind == "video" else 48000
        seconds = NTP_BASE + capture_s + clock_step_s
        ntp = (int(seconds) << 32) | int((seconds % 1) * (1 << 32))
        self.sources[kind].sender_report(self.upstreams[kind], ntp, round(capture_s * rate))


async def replay(events: list[tuple[float, str, float, bool]], reports: list[tuple[float, str]],
                 segment_ms: int = 4000, clock_step: tuple[float, float] | None = None,
                 ) -> Recording:
    """Publish (arrival_s, kind, capture_s, key) in arrival order, with sender reports (each at
    (capture_s, kind)) given just before the first packet that arrives after them."""
    epoch = time.monotonic() - max(e[0] for e in events) - 1
    sender = Sender(epoch)
    rec = Recording(epoch, segment_ms)
    recorder = ParticipantRecorder(rec, "guardian", sender.sources, 0)  # type: ignore[arg-type]
    pending = sorted(reports)
    for arrival, kind, capture, key in sorted(events, key=lambda e: (e[0], e[1])):
        while pending and pending[0][0] <= arrival:
            at, report_kind = pending.pop(0)
            step = clock_step[1] if clock_step and at >= clock_step[0] else 0.0
            sender.report(report_kind, at, step)
        sender.packet(kind, capture, arrival, key)
        await asyncio.sleep(0)  # the recorder's pumps take it
    await asyncio.sleep(0)
    await recorder.stop()
    return rec


def media(seconds: float, delay: float = 0.02, late: Callable[[str, float], float] | None = None,
          start: float = 0.0, key_every: int = 30) -> list[tuple[float, str, float, bool]]:
    """Audio every 20 ms and video every 1/30 s (a key frame every `key_every`) from `start` for
    `seconds`, arriving `delay` after capture, plus `late(kind, capture)` more (and never
    before the packet sent ahead of it)."""
    events = []
    for kind, step in (("audio", 0.02), ("video", 1 / 30)):
        arrival = 0.0
        for i in range(round(seconds / step)):
            capture = start + i * step
            extra = late(kind, capture) if late else 0.0
            arrival = max(arrival, capture + delay + extra)  # a stream is sent in order
            events.append((arrival, kind, capture, kind == "video" and i % key_every == 0))
    return events


def reports(seconds: float, every: float = 1.0) -> list[tuple[float, str]]:
    return [(i * every + 0.01, kind) for i in range(int(seconds / every))
            for kind in ("audio", "video")]


def placed(rec: Recording) -> dict[str, list[tuple[int, int]]]:
    """(position on the consultation clock, ms) per kind, in write order."""
    out: dict[str, list[tuple[int, int]]] = {"audio": [], "video": []}
    for seg in rec.closed:
        for kind, t, _ in seg.packets:
            out[kind].append(t)
    return out  # type: ignore[return-value]


def capture_offsets(rec: Recording, events) -> set[int]:
    """Each packet's position minus its capture time (ms): one value means one clock."""
    captures = {kind: sorted(c for _, k, c, _ in events if k == kind) for kind in ("audio",
                                                                               "video")}
    offsets = set()
    for kind, times in placed(rec).items():
        written = captures[kind][-len(times):]  # video before the first key frame is dropped
        offsets.update(t - round(c * 1000) for t, c in zip(times, written, strict=True))
    return offsets


async def test_first_packets_of_one_kind_late_shift_nothing() -> None:
    """Video's first second arrives 100 ms late: both kinds still on one clock, to the ms."""
    events = media(6.0, late=lambda kind, c: 0.1 if kind == "video" and c < 1.0 else 0.0)
    rec = await replay(events, reports(6.0))
    offsets = capture_offsets(rec, events)
    assert max(offsets) - min(offsets) <= 1, sorted(offsets)


async def test_a_backlog_is_placed_where_it_was_captured_and_cuts_no_slivers() -> None:
    """The sender stalls 6 s then sends it all at once (issue 12: offsets from -519 to +620 ms
    and 20 ms segments): every packet keeps its capture time, no segment under 1 s."""

    def backlog(kind: str, capture: float) -> float:
        return 16.0 - capture if 10.0 <= capture < 16.0 else 0.0

    events = media(30.0, late=backlog)
    rec = await replay(events, reports(30.0))
    offsets = capture_offsets(rec, events)
    assert max(offsets) - min(offsets) <= 1, sorted(offsets)
    lengths = [seg.end_ms - seg.t_start_ms for seg in rec.closed]
    assert all(n >= MIN_SEGMENT_MS for n in lengths[:-1]), lengths
    assert rec.closed[0].t_start_ms >= 0 and rec.closed[-1].end_ms <= 30_100


async def test_no_segment_under_a_second_when_media_resumes_just_before_a_grid_line() -> None:
    """After a gap, media resumes 100 ms before a grid line, and the sender answers the
    recorder's key-frame requests at once: the segment still runs a second."""
    events = media(3.0) + media(4.0, start=7.9, key_every=6)
    rec = await replay(events, reports(12.0))
    assert rec.gaps, "the 5 s video gap is an event"
    lengths = [(seg.t_start_ms, seg.end_ms - seg.t_start_ms) for seg in rec.closed]
    assert all(n >= MIN_SEGMENT_MS for _, n in lengths[:-1]), lengths


async def test_a_clock_that_moves_re_anchors_both_kinds_together() -> None:
    """The sender's clock steps 3 s back at 10 s (an NTP step, a restart): its packets look
    3 s late against the offset; after REANCHOR_WINDOW_MS both kinds move, by the same."""
    rec = await replay(media(20.0), reports(20.0), segment_ms=60_000, clock_step=(10.0, -3.0))
    by_kind = placed(rec)
    where = {}
    for kind, step in (("audio", 20), ("video", 33)):
        times = by_kind[kind]
        jumps = [(a, b - a) for a, b in itertools.pairwise(times) if b - a > step + 5]
        assert len(jumps) == 1 and abs(jumps[0][1] - 3000) < 50, (kind, jumps)
        where[kind] = jumps[0][0]
    assert abs(where["audio"] - where["video"]) < 40, where


def test_offset_keeps_the_fastest_and_re_anchors_only_on_a_lasting_move() -> None:
    offset = Offset("test")
    assert offset.place(arrival_ms=200, clock_ms=0) == 200  # a late first packet
    assert offset.place(arrival_ms=120, clock_ms=100) == 120  # a faster one: 20 ms delay
    assert offset.place(arrival_ms=300, clock_ms=200) == 220  # a late one keeps its place
    late = REANCHOR_MS + 500
    t = 1000.0
    while t < 1000 + REANCHOR_WINDOW_MS - 100:  # late by more than REANCHOR_MS, not for long
        assert offset.place(t + late, t) == t + 20
        t += 20
    assert offset.place(t + 20, t) == t + 20  # back on time: nothing moved
    start = t
    while t < start + REANCHOR_WINDOW_MS + 100:
        placed_at = offset.place(t + late, t)
        t += 20
    assert placed_at == t - 20 + late  # moved by what it lasted


def test_sender_reports_are_kept_in_the_rebased_timeline() -> None:
    source = MediaSource("audio", "g/audio")
    first = source.attach(lambda: True)
    packet = av.Packet(b"x")
    packet.pts, packet.time_base = 48000, Fraction(1, 48000)  # the receiver's frame timeline
    source.publish(packet, time.monotonic())
    rebased = packet.pts  # the source's own timeline (it starts at 0)
    ntp = (NTP_BASE << 32) | (1 << 31)  # NTP_BASE + 0.5 s
    source.sender_report(first, ntp, 48000 + 480)  # RTP time 10 ms after that packet
    assert source.sender_time(rebased, first) == pytest.approx(NTP_BASE + 0.49)
    # A reconnect: a new upstream, whose frame timeline starts again; the source rebases it
    # onto its own, and reports of the old upstream no longer count.
    second = source.attach(lambda: True)
    assert source.sender_time(rebased, second) is None
    packet = av.Packet(b"x")
    packet.pts, packet.time_base = 0, Fraction(1, 48000)
    source.publish(packet, time.monotonic())
    assert packet.pts > rebased
    source.sender_report(first, ntp, 0)  # late, from the old receiver
    assert source.sender_time(packet.pts, second) is None
    source.sender_report(second, ntp + (5 << 32), 960)
    assert source.sender_time(packet.pts, second) == pytest.approx(NTP_BASE + 5.5 - 0.02)


async def test_media_captured_just_before_the_recording_began_starts_at_zero() -> None:
    """Frames in flight when the recording began are placed at its start, not before it (a
    negative start has no spool name, segment.SPOOL_NAME, and no grid line of its own)."""
    rec = await replay(media(3.0, start=-0.05), reports(3.0, every=0.5), segment_ms=2000)
    assert rec.closed[0].t_start_ms == 0
    assert rec.closed[0].end_ms - rec.closed[0].t_start_ms >= MIN_SEGMENT_MS


async def test_a_sender_without_reports_is_recorded_by_arrival(caplog) -> None:
    """No sender report ever: after REPORT_WAIT_S of held media, everything is written, placed
    by its own RTP time from the fastest arrival, and the fallback is logged."""
    events = media(REPORT_WAIT_S + 2.0)
    rec = await replay(events, [])
    by_kind = placed(rec)
    assert len(by_kind["audio"]) == sum(k == "audio" for _, k, _, _ in events)
    assert capture_offsets(rec, events) == {20}
    assert "no audio sender report" in caplog.text and "no video sender report" in caplog.text
