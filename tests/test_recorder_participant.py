"""recorder/participant.py as a unit: where one participant's media is cut into segments, what
each segment starts with, gaps, a write failure, the end, a reconnect; read back from the
encrypted WebM files it really wrote.

Real VP8 and Opus packets (bench.clip), real MediaSources with sender reports, real OpenSegments
on a writer thread; only the consultation around them is this file's (`Spool`: what
recorder/consultation.py does without its database and store). Timing on the sender's clock in
detail: tests/test_recording_timing.py.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import pytest

from bench.clip import encode_opus, encode_vp8
from core.vp8 import is_vp8_keyframe
from recorder.keys import KeyRing
from recorder.participant import FORCE_CUT_MS, GAP_MS, ParticipantRecorder
from recorder.segment import OpenSegment
from recorder.spool_file import SpoolFile
from recorder.webm import MuxStats
from signaling.media import MediaSource

from .test_room_lifecycle import until

CID = "c_participant"
NTP_BASE = 3_900_000_000
FPS = 30
DELAY_S = 0.02  # every packet arrives this long after its capture
Packet = tuple[str, int, bool]  # kind, ms from the segment's start, a VP8 key frame


@pytest.fixture(scope="module")
def frames() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(every frame a key frame, only the first one, Opus): 8 s each, tiny."""
    keys = encode_vp8(96, 64, fps=FPS, seconds=8.0, bitrate=50_000, keyframe_every=1)
    deltas = encode_vp8(96, 64, fps=FPS, seconds=8.0, bitrate=50_000,
                        keyframe_every=100_000)
    assert all(is_vp8_keyframe(p) for p in keys.packets)
    assert [is_vp8_keyframe(p) for p in deltas.packets].count(True) == 1
    return keys.packets, deltas.packets, encode_opus(8.0).packets


class Spool:
    """The participant's consultation: real segments in a spool folder, closed on the writer
    thread; the gaps and the failure it was told of."""

    def __init__(self, root: Path, segment_ms: int, epoch_mono: float) -> None:
        self.root, self.segment_ms, self.epoch_mono = root, segment_ms, epoch_mono
        self.keys = KeyRing(base64.b64encode(os.urandom(32)).decode())
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="test-writer")
        self.stopped = False
        self.failed: str | None = None
        self.opened: list[OpenSegment] = []
        self.closing: list[Future[MuxStats | None]] = []
        self.gaps: list[tuple[str, int, int]] = []

    def open_segment(self, role: str, seq: int, t_ms: int) -> OpenSegment:
        boundary = (t_ms // self.segment_ms + 1) * self.segment_ms
        seg = OpenSegment(self.executor, self.root, CID, role, seq, t_ms, boundary, self.keys)
        self.opened.append(seg)
        return seg

    def finish(self, seg: OpenSegment) -> None:
        seg.flush()
        self.closing.append(self.executor.submit(seg.close_blocking))

    def gap(self, role: str, from_ms: int, to_ms: int) -> None:
        self.gaps.append((role, from_ms, to_ms))

    def fail(self, error: str) -> None:
        if self.failed is None:
            self.failed = error
            self.stopped = True  # the service stops the consultation's recording

    def segments(self) -> list[tuple[int, list[Packet]]]:
        """Each segment written: (its start on the consultation clock, its packets)."""
        for future in self.closing:
            future.result(timeout=10)
        self.executor.shutdown(wait=True)
        return [(seg.t_start_ms, read(seg.path, self.keys)) for seg in self.opened]


def read(path: Path, keys: KeyRing) -> list[Packet]:
    with SpoolFile.open(path, keys) as f, av.open(f) as container:
        kinds = {s.index: s.type for s in container.streams}
        return [(kinds[p.stream_index], int(p.pts * p.time_base * 1000),
                 kinds[p.stream_index] == "video" and is_vp8_keyframe(bytes(p)))
                for p in container.demux() if p.size]


class Sender:
    """One participant's camera and microphone feeding the node's MediaSources, on a capture
    clock of its own (sender reports), each packet arriving DELAY_S after its capture."""

    def __init__(self, epoch: float, frames: tuple[list[bytes], list[bytes], list[bytes]],
                 ntp_base: float = NTP_BASE) -> None:
        self.epoch = epoch
        self.keys, self.deltas, self.opus = frames
        self.sources = {"audio": MediaSource("audio", "g/audio"),
                        "video": MediaSource("video", "g/video")}
        self.reconnect(ntp_base)

    @property
    def asks(self) -> int:
        """Key frame requests made of the video source (sent upstream, or coalesced)."""
        video = self.sources["video"]
        return video.requests_sent + video.requests_coalesced

    def reconnect(self, ntp_base: float) -> None:
        """A new upstream (the page's new peer connection, maybe another device's clock)."""
        self.ntp_base = ntp_base
        self.upstreams = {kind: s.attach(lambda: True) for kind, s in self.sources.items()}

    def report(self, kind: str, capture_s: float) -> None:
        """RTP time `capture_s` was ntp_base + capture_s on the sender's clock."""
        rate = 90000 if kind == "video" else 48000
        seconds = self.ntp_base + capture_s
        ntp = (int(seconds) << 32) | int((seconds % 1) * (1 << 32))
        self.sources[kind].sender_report(self.upstreams[kind], ntp, round(capture_s * rate))

    async def send(self, start_s: float, end_s: float, keys_at: set[int] | None = None,
                   video: bool = True, arrive_from_s: float | None = None) -> None:
        """Audio every 20 ms and (with `video`) frame i of the clip every 1/FPS s, captured from
        `start_s` to `end_s` on this upstream's clock; frame i a key frame if i is in `keys_at`.
        They arrive from `arrive_from_s` (default: as captured) plus DELAY_S; a sender report
        of each kind right after its first packet, then every second of capture."""
        shift = (arrive_from_s if arrive_from_s is not None else start_s) - start_s
        items = [(i * 0.02, "audio", i) for i in range(round(start_s / 0.02),
                                                       round(end_s / 0.02))]
        if video:
            items += [(i / FPS, "video", i) for i in range(round(start_s * FPS),
                                                           round(end_s * FPS))]
        next_report = {"audio": start_s, "video": start_s}
        for capture, kind, i in sorted(items):
            if kind == "video":
                rate, data = 90000, (self.keys if i in (keys_at or set()) else self.deltas)[i]
            else:
                rate, data = 48000, self.opus[i % len(self.opus)]
            packet = av.Packet(data)
            packet.pts = packet.dts = round(capture * rate)
            packet.time_base = Fraction(1, rate)
            self.sources[kind].publish(packet, self.epoch + capture + shift + DELAY_S)
            if capture >= next_report[kind]:  # (a source takes reports once it has media)
                self.report(kind, capture)
                next_report[kind] += 1.0
            await asyncio.sleep(0)  # the recorder's pumps take it


@pytest.fixture
def epoch() -> float:
    return time.monotonic() - 30.0  # the recording began "30 s ago": every arrival is past


@pytest.fixture
def recording(tmp_path: Path, epoch: float, frames) -> Iterator[tuple[Spool, Sender]]:
    spool = Spool(tmp_path, 2000, epoch)
    yield spool, Sender(epoch, frames)
    spool.executor.shutdown(wait=True)


def starts(segments: list[tuple[int, list[Packet]]]) -> list[int]:
    return [start for start, _ in segments]


def first_video(packets: list[Packet]) -> Packet:
    return next(p for p in packets if p[0] == "video")


async def test_cut_on_the_grid_at_the_next_key_frame_asking_for_one(recording) -> None:
    spool, sender = recording
    recorder = ParticipantRecorder(spool, "guardian", sender.sources, 0)  # type: ignore[arg-type]
    keys_at = set(range(0, 7 * FPS, 27))  # every 0.9 s
    asks = sender.asks
    await sender.send(0.0, 7.0, keys_at)
    await recorder.stop()
    segments = spool.segments()
    # Grid lines every 2 s: cut at the first key frame past each (2.7, 4.5, 6.3 s), +20 ms delay.
    assert starts(segments) == [20, 2720, 4520, 6320]
    for _, packets in segments:
        assert first_video(packets)[1:] == (0, True)  # each segment opens on a whole picture
    assert sum(k == "video" for _, ps in segments for k, _, _ in ps) == 7 * FPS
    assert sum(k == "audio" for _, ps in segments for k, _, _ in ps) == 7 * 50
    assert sender.asks > asks  # past a grid line it asked for a key frame, not only waited
    assert spool.gaps == [] and spool.failed is None


async def test_no_key_frame_for_long_cuts_anyway_and_video_waits_for_one(recording) -> None:
    spool, sender = recording
    recorder = ParticipantRecorder(spool, "guardian", sender.sources, 0)  # type: ignore[arg-type]
    await sender.send(0.0, 8.0, {0, round(5.5 * FPS)})  # key frames at 0 and 5.5 s only
    await recorder.stop()
    segments = spool.segments()
    (_, first), (start, second) = segments
    assert start == 2000 + FORCE_CUT_MS  # the grid line plus the longest wait for a key frame
    assert second[0][:2] == ("audio", 0)  # audio went on into the new segment
    assert first_video(second) == ("video", 5520 - start, True)  # video from the key frame
    assert sum(k == "video" for k, _, _ in second) == round(2.5 * FPS)  # the deltas dropped
    assert sum(k == "video" for k, _, _ in first) == 5 * FPS


async def test_a_video_gap_is_reported_and_starts_a_new_segment(tmp_path: Path, epoch: float,
                                                                frames) -> None:
    spool, sender = Spool(tmp_path, 60_000, epoch), Sender(epoch, frames)
    recorder = ParticipantRecorder(spool, "guardian", sender.sources, 0)  # type: ignore[arg-type]
    keys_at = set(range(0, 8 * FPS, 15))
    await sender.send(0.0, 2.0, keys_at)
    await sender.send(2.0, 5.0, video=False)  # the camera stalls, the microphone goes on
    await sender.send(5.0, 6.0, keys_at)
    await recorder.stop()
    last_frame_ms = round((2 * FPS - 1) / FPS * 1000) + 20
    assert spool.gaps == [("guardian", last_frame_ms, 5020)]
    assert 5020 - last_frame_ms > GAP_MS
    segments = spool.segments()
    assert starts(segments) == [20, 5020]
    assert first_video(segments[1][1]) == ("video", 0, True)


async def test_a_write_error_fails_the_recording_and_nothing_more_is_written(
        recording) -> None:
    """The spool folder cannot be made (a file in its place; a full disk fails the same way):
    the error is noticed at the next packet, the consultation is told, the rest is dropped."""
    spool, sender = recording
    (spool.root / CID).write_bytes(b"not a folder")
    recorder = ParticipantRecorder(spool, "guardian", sender.sources, 0)  # type: ignore[arg-type]
    await sender.send(0.0, 1.0, {0})
    (seg,) = spool.opened
    seg.flush()  # (the writer's batch timer would, within BATCH_S)
    await until(lambda: seg.error is not None, 5, lambda: seg.error)
    assert spool.failed is None  # not yet noticed: no packet since
    await sender.send(1.0, 3.0, {30, 60})
    assert spool.failed == seg.error and "FileExistsError" in spool.failed
    assert spool.opened == [seg]  # no further segment
    await recorder.stop()


async def test_stop_writes_what_was_still_held_for_sender_reports(recording) -> None:
    """The first half second is held to seed the clock (SEED_S): stopped before it ends, the
    recorder still writes it."""
    spool, sender = recording
    recorder = ParticipantRecorder(spool, "guardian", sender.sources, 0)  # type: ignore[arg-type]
    await sender.send(0.0, 0.3, {0})
    assert spool.opened == []
    await recorder.stop()
    (_, packets), = spool.segments()
    assert sum(k == "video" for k, _, _ in packets) == round(0.3 * FPS)
    assert sum(k == "audio" for k, _, _ in packets) == 15


async def test_a_reconnect_from_another_clock_goes_on_where_the_call_is(recording) -> None:
    """A new upstream (the guardian's page came back, on another device whose clock is 1000 s
    behind): its media is placed where it arrives on the consultation's clock, not 1000 s
    earlier (which would pile it up at the recording's start)."""
    spool, sender = recording
    spool.segment_ms = 60_000
    recorder = ParticipantRecorder(spool, "guardian", sender.sources, 0)  # type: ignore[arg-type]
    keys_at = set(range(0, 10 * FPS, FPS))
    await sender.send(0.0, 2.0, keys_at)
    sender.reconnect(NTP_BASE - 1000)
    await sender.send(0.0, 3.0, keys_at, arrive_from_s=4.0)
    await recorder.stop()
    placed = [start + ms for start, packets in spool.segments() for _, ms, _ in packets]
    assert sum(p < 2100 for p in placed) == 2 * (FPS + 50)  # the first upstream's
    second = [p for p in placed if p >= 2100]
    assert len(second) == 3 * (FPS + 50) and 4000 <= min(second) and max(second) < 7100
