"""WebM segments by muxing encoded VP8/Opus packets with PyAV: no decoder, no encoder.

A segment is one participant's audio and video over one slice of the consultation. Its
timestamps are milliseconds from the segment's own start (the index keeps where that start lies
on the consultation's shared clock), so each file plays on its own, from zero, with no
post-processing step.

Crash safety: the muxer closes a Matroska cluster at least every second and flushes each packet
to the file, so a killed process leaves a file that demuxes up to its last second or so. `salvage`
re-muxes whatever packets of such a file are readable into a proper file (cues, duration).
Given the master keys, a segment is written (and salvaged) through `SpoolFile`, encrypted as it
is written (recorder/spool_file.py); without them, as a plain file.
All functions here block: they run in the recorder's writer thread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from .keys import KeyRing
from .opus_template import opus_template
from .spool_file import SpoolFile

MS = Fraction(1, 1000)
HOLD_AUDIO_MS = 2000  # wait this long for a video key frame (its size) before writing the header
OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1",
           "max_interleave_delta": "500000"}


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 key frame header (RFC 6386 §9.1), or None."""
    if len(data) < 10 or data[0] & 1 or data[3:6] != b"\x9d\x01\x2a":
        return None
    w, h = struct.unpack_from("<HH", data, 6)
    return w & 0x3FFF, h & 0x3FFF


@dataclass
class MuxStats:
    video_packets: int = 0
    audio_packets: int = 0
    last_ms: dict[str, int] = field(default_factory=dict)
    size: int = 0

    @property
    def duration_ms(self) -> int:
        """Up to the end of the last packet (Opus frames are 20 ms, video ~1/30 s)."""
        ends = [ms + (20 if kind == "audio" else 33) for kind, ms in self.last_ms.items()]
        return max(ends, default=0)


class SegmentMuxer:
    """One WebM file being written; call `write` for each packet, then `close`."""

    def __init__(self, path: Path, size: tuple[int, int] | None = None,
                 keys: KeyRing | None = None) -> None:
        self.path = path
        self.size = size
        self.keys = keys
        self.stats = MuxStats()
        self._out: av.container.OutputContainer | None = None
        self._file: SpoolFile | None = None
        self._streams: dict[str, av.stream.Stream] = {}
        self._held: list[tuple[str, bytes, int]] = []

    def write(self, kind: str, data: bytes, ms: int) -> None:
        if self._out is None:
            size = vp8_size(data) if kind == "video" else None
            if size is not None:
                self.size = size
            self._held.append((kind, data, ms))
            if self.size is None and (kind == "video" or ms - self._held[0][2] < HOLD_AUDIO_MS):
                return  # no picture size yet: hold audio a little while for a key frame
            self._open()
            held, self._held = self._held, []
            for item in held:
                self._mux(*item)
            return
        self._mux(kind, data, ms)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.keys is None:
            out = av.open(str(self.path), "w", format="webm", options=OPTIONS)
        else:
            self._file = SpoolFile.create(self.path, self.keys)
            out = av.open(self._file, "w", format="webm", options=OPTIONS)
        width, height = self.size or (640, 480)
        video = out.add_mux_stream("vp8", width=width, height=height)
        audio = out.add_stream_from_template(opus_template(), opaque=True)
        video.time_base = audio.time_base = MS
        self._streams = {"video": video, "audio": audio}
        self._out = out

    def _mux(self, kind: str, data: bytes, ms: int) -> None:
        assert self._out is not None
        last = self.stats.last_ms.get(kind, -1)
        ms = max(ms, last + 1, 0)  # per stream, timestamps must rise
        packet = av.Packet(data)
        packet.pts = packet.dts = ms
        packet.time_base = MS
        packet.stream = self._streams[kind]
        self._out.mux_one(packet)
        self.stats.last_ms[kind] = ms
        if kind == "video":
            self.stats.video_packets += 1
        else:
            self.stats.audio_packets += 1

    def close(self) -> MuxStats:
        """Write the trailer (cues, duration); a segment with no packet leaves no file."""
        if self._out is None and self._held:
            self._open()
            held, self._held = self._held, []
            for item in held:
                self._mux(*item)
        if self._out is not None:
            self._out.close()
            self._out = None
            if self._file is not None:
                self.stats.size = self._file.size
                self._file.close()
                self._file = None
            else:
                self.stats.size = self.path.stat().st_size
        return self.stats

    def abort(self) -> None:
        """Give up on the file (after a write error): close what can be closed, never raise."""
        out, self._out = self._out, None
        if out is not None:
            try:
                out.close()
            except Exception:
                pass
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except Exception:
                pass


def salvage(src: Path, dst: Path, keys: KeyRing | None = None) -> MuxStats | None:
    """Re-mux the readable packets of a possibly damaged segment; None when nothing is readable.
    With `keys`, `src` is read and `dst` written through SpoolFile (KeyMissing propagates: the
    file is then left for a node that has its key)."""
    reader: SpoolFile | None = None
    try:
        if keys is None:
            source = av.open(str(src))
        else:
            reader = SpoolFile.open(src, keys)
            source = av.open(reader)
    except (av.error.FFmpegError, OSError, ValueError):
        if reader is not None:
            reader.close()
        return None
    muxer = SegmentMuxer(dst, keys=keys)
    try:
        streams = {s.index: s.type for s in source.streams if s.type in ("video", "audio")}
        try:
            for packet in source.demux():
                kind = streams.get(packet.stream_index)
                if kind is None or packet.pts is None or packet.size == 0:
                    continue
                ms = int(packet.pts * packet.time_base * 1000)
                muxer.write(kind, bytes(packet), ms)
        except (av.error.FFmpegError, OSError):
            pass  # a torn tail: keep what came before it
    finally:
        source.close()
        if reader is not None:
            reader.close()
    stats = muxer.close()
    return stats if stats.video_packets + stats.audio_packets else None


@dataclass(frozen=True)
class Probe:
    duration_s: float
    streams: dict[str, int]  # kind -> packets


def probe(path: Path) -> Probe:
    """Open a plaintext segment the way a player would and count what it holds."""
    with av.open(str(path)) as container:
        kinds = {s.index: s.type for s in container.streams}
        counts: dict[str, int] = {}
        for packet in container.demux():
            if packet.size:
                kind = kinds[packet.stream_index]
                counts[kind] = counts.get(kind, 0) + 1
        duration = (container.duration or 0) / 1_000_000
    return Probe(duration, counts)
