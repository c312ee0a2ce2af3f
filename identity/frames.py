"""Frames from the doctor's live video, taken from the node's own MediaSource (never a picture
the client sends).

VP8 inter frames depend on every frame since the last key frame, so a sampled frame can only be
decoded by a decoder that saw them all. Two ways, each where it is cheapest:
- `FrameTap` while verifying (seconds): keep one decoder fed with every packet (~1 ms a frame at
  640x480) and hand out the newest frame when a worker is free.
- `grab_frames` for the periodic re-checks (every 30 s): subscribe, which starts at a key frame
  (the source asks the sender for one), decode a few frames spaced `every` frames apart (a
  third of a second at 15 fps: not three copies of one blur) and unsubscribe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError

from signaling.media import MediaSource


def _decode(codec: av.CodecContext, packet: av.Packet) -> av.VideoFrame | None:
    try:
        frames = codec.decode(av.Packet(bytes(packet)))
    except av.FFmpegError:
        return None
    return frames[-1] if frames else None  # type: ignore[return-value]


class FrameTap:
    """Decodes every packet of a source; `next_frame()` returns a frame newer than the last one."""

    def __init__(self, source: MediaSource) -> None:
        self.source = source
        self.decoded = 0
        self.decode_s = 0.0
        self._codec = av.CodecContext.create("vp8", "r")
        self._sub = source.subscribe()
        self._latest: av.VideoFrame | None = None
        self._latest_at = 0.0
        self._seq = 0
        self._taken = 0
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._feed(), name=f"frame-tap-{source.label}")

    async def _feed(self) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                packet = await self._sub.get()
                started = time.process_time()
                frame = _decode(self._codec, packet)
                self.decode_s += time.process_time() - started
                if frame is not None:
                    self.decoded += 1
                    self._latest, self._latest_at = frame, time.monotonic()
                    self._seq += 1
                    self._new.set()

    async def next_frame(self, timeout: float) -> tuple[np.ndarray, float]:
        """The newest frame not handed out yet (as RGB) and when it arrived; TimeoutError."""
        async with asyncio.timeout(timeout):
            while self._seq == self._taken:
                self._new.clear()
                await self._new.wait()
        assert self._latest is not None
        self._taken = self._seq
        return self._latest.to_ndarray(format="rgb24"), self._latest_at

    async def close(self) -> None:
        self._sub.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def grab_frames(source: MediaSource, timeout: float, count: int = 1,
                      every: int = 5) -> list[np.ndarray]:
    """`count` decoded frames, the first from the key frame a new subscription begins with,
    then every `every`-th; fewer (at least one) when the time runs out; TimeoutError for none."""
    codec = av.CodecContext.create("vp8", "r")
    sub = source.subscribe(maxsize=64)
    frames: list[np.ndarray] = []
    decoded = 0
    try:
        async with asyncio.timeout(timeout):
            while len(frames) < count:
                frame = _decode(codec, await sub.get())
                if frame is None:
                    continue
                if decoded % every == 0:
                    frames.append(frame.to_ndarray(format="rgb24"))
                decoded += 1
    except TimeoutError:
        if not frames:
            raise
    finally:
        sub.close()
    return frames


async def grab_frame(source: MediaSource, timeout: float) -> np.ndarray:
    """One decoded frame, starting from the key frame a new subscription begins with."""
    return (await grab_frames(source, timeout))[0]
