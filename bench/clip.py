"""Pre-encoded media for load generation: a VP8 clip and an Opus tone, encoded once, replayed.

A load generator that encoded live would saturate its own core long before the node (VP8 encode
is ~8 ms a frame here); replaying packets costs almost nothing. Each replayed frame can carry a
12-byte trailer (send time + magic) that the node passes through untouched, so the receiving
client measures end-to-end latency without decoding anything.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RtcpSrPacket

TRAILER = struct.Struct("!d4s")
MAGIC = b"TCB1"


@dataclass(frozen=True)
class Clip:
    kind: str
    packets: list[bytes]
    pts_step: int
    clock_rate: int

    @property
    def interval(self) -> float:
        return self.pts_step / self.clock_rate


def encode_vp8(width: int = 640, height: int = 480, fps: int = 30, seconds: float = 4.0,
               bitrate: int = 1_000_000, keyframe_every: int = 30) -> Clip:
    """A moving synthetic pattern (not a face), VP8 at `bitrate`, a key frame every second."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = bitrate
    codec.time_base = Fraction(1, fps)
    codec.gop_size = keyframe_every
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                     "error-resilient": "1"}
    ys, xs = np.mgrid[0:height, 0:width]
    packets: list[bytes] = []
    count = int(seconds * fps)
    for i in range(count):
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        rgb[..., 0] = (xs + i * 4) % 256
        rgb[..., 1] = (ys + i * 2) % 256
        rgb[..., 2] = ((xs // 40 + ys // 40 + i // 8) % 2) * 200
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        if i % keyframe_every == 0:
            frame.pict_type = av.video.frame.PictureType.I
        packets.extend(bytes(p) for p in codec.encode(frame))
    packets.extend(bytes(p) for p in codec.encode(None))
    return Clip("video", packets[:count], 90000 // fps, 90000)


def encode_opus(seconds: float = 1.0, bitrate: int = 32000) -> Clip:
    """A quiet 440 Hz tone, 20 ms Opus packets."""
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate = 48000
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = bitrate
    samples = 960
    packets: list[bytes] = []
    t = np.arange(int(seconds * 48000)) / 48000
    pcm = (np.sin(2 * np.pi * 440 * t) * 3000).astype(np.int16)
    for i in range(0, len(pcm) - samples + 1, samples):
        frame = av.AudioFrame.from_ndarray(pcm[i:i + samples].reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = 48000
        frame.pts = i
        packets.extend(bytes(p) for p in codec.encode(frame))
    return Clip("audio", packets, samples, 48000)


class ClipTrack(MediaStreamTrack):
    """Replays a clip in real time as av.Packet (aiortc's sender packetizes without encoding).

    With `capture_stamps`, each frame's stamp is when it was captured (its place in the replay,
    on the wall clock) rather than when it was handed to the sender, and `lag_s` holds frames
    that long after capture before sending them: a slow camera pipeline, or first packets that
    are late. Recording tests measure A/V sync against these stamps: a frame and the audio
    captured with it carry the same stamp, like a flash and a beep made together.
    """

    def __init__(self, clip: Clip, stamp: bool = True, capture_stamps: bool = False) -> None:
        super().__init__()
        self.kind = clip.kind
        self.clip = clip
        self.stamp = stamp
        self.capture_stamps = capture_stamps
        self.lag_s = 0.0
        self.handed_lag_s = 0.0  # of the last frame handed over: sent minus captured
        self.sent = 0
        self.keyframe_requests = 0
        self._skip = 0  # clip packets jumped over to answer key-frame requests
        self._start: float | None = None
        self._start_wall = 0.0
        self._time_base = Fraction(1, clip.clock_rate)

    def request_keyframe(self) -> None:
        """A receiver asked for a key frame (RTCP PLI): go on from the clip's start, which is
        one, as a camera's encoder would send one at once."""
        self.keyframe_requests += 1
        if self.kind == "video":
            self._skip = -self.sent % len(self.clip.packets)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self._start is None:
            self._start = time.monotonic()
            self._start_wall = time.time()
        due = self._start + self.sent * self.clip.interval + self.lag_s
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.time()
        captured = self._start_wall + self.sent * self.clip.interval
        self.handed_lag_s = now - captured
        data = self.clip.packets[(self.sent + self._skip) % len(self.clip.packets)]
        if self.stamp:
            data += TRAILER.pack(captured if self.capture_stamps else now, MAGIC)
        packet = av.Packet(data)
        packet.pts = packet.dts = self.sent * self.clip.pts_step
        packet.time_base = self._time_base
        self.sent += 1
        return packet


def report_capture_clock(sender: RTCRtpSender, track: ClipTrack) -> None:
    """Make `sender`'s RTCP sender reports pair RTP time with capture time, as Chromium's do.

    aiortc pairs the RTP timestamp of the last packet sent with the wall clock when it was sent,
    so a frame sent late looks captured late; Chromium pairs it with the capture clock (its SR
    extrapolates from the last frame's capture time). A receiver that times media by sender
    reports can only undo sending delays the second way. Test and bench senders only: this
    rewrites each SR on its way out, moving its NTP time back by how late the last frame left.
    Hooks aiortc's private `_send_rtcp`; fails at once if aiortc no longer has it.
    """
    original = getattr(sender, "_send_rtcp", None)
    if not callable(original):
        raise RuntimeError("aiortc's RTCRtpSender no longer has _send_rtcp; check "
                           "bench/clip.py against the installed aiortc")

    async def send(packets: list) -> None:
        for packet in packets:
            if isinstance(packet, RtcpSrPacket) and packet.sender_info.ntp_timestamp:
                packet.sender_info.ntp_timestamp -= int(track.handed_lag_s * (1 << 32))
        await original(packets)

    sender._send_rtcp = send  # type: ignore[method-assign]


def read_stamp(data: bytes) -> float | None:
    """The send time a ClipTrack appended, if the frame carries one."""
    if len(data) >= TRAILER.size and data[-4:] == MAGIC:
        return TRAILER.unpack(data[-TRAILER.size:])[0]
    return None
