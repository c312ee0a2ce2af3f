"""Frames from the doctor's live video, taken from the node's own media feed (never a picture
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
from collections.abc import AsyncIterator
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError

from core.calls import MediaFeed


def _decode(codec: av.CodecContext, packet: av.Packet) -> av.VideoFrame | None:
    try:
        frames = codec.decode(av.Packet(bytes(packet)))
    except av.FFmpegError:
        return None
    return frames[-1] if frames else None  # type: ignore[return-value]


class FrameTap:
    """Decodes every packet of a source; `next_frame()` returns a frame newer than the last one."""

    def __init__(self, source: MediaFeed) -> None:
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


@dataclass
class DecodeCost:
    """CPU seconds spent decoding (and converting) frames, measured around the decode itself:
    the process clock across an await would count whatever else the node did meanwhile."""

    seconds: float = 0.0


async def grab_frames(source: MediaFeed, timeout: float, count: int = 1, every: int = 5,
                      cost: DecodeCost | None = None) -> AsyncIterator[np.ndarray]:
    """Up to `count` decoded frames, the first from the key frame a new subscription begins
    with, then every `every`-th; stops early when the time runs out (TimeoutError only if none
    came). A consumer that has seen enough stops iterating: the frames after it are not decoded
    (use contextlib.aclosing, so the subscription closes at once)."""
    codec = av.CodecContext.create("vp8", "r")
    sub = source.subscribe(maxsize=64)
    given = decoded = 0
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while given < count:
            try:
                async with asyncio.timeout_at(deadline):
                    packet = await sub.get()
            except TimeoutError:
                if not given:
                    raise
                return
            started = time.process_time()
            frame = _decode(codec, packet)
            rgb = (frame.to_ndarray(format="rgb24")
                   if frame is not None and decoded % every == 0 else None)
            if cost is not None:
                cost.seconds += time.process_time() - started
            if frame is None:
                continue
            decoded += 1
            if rgb is not None:
                given += 1
                yield rgb
    finally:
        sub.close()


async def grab_frame(source: MediaFeed, timeout: float) -> np.ndarray:
    """One decoded frame, starting from the key frame a new subscription begins with."""
    async with contextlib.aclosing(grab_frames(source, timeout)) as frames:
        async for frame in frames:
            return frame
    raise TimeoutError("no frame")
