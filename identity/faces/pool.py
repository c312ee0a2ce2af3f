"""The face worker pool: dlib holds the GIL (a thread still stalls the loop ~160 ms a frame), so
face work runs in separate processes and the event loop only awaits their answers.

Started lazily (nodes and tests that never verify anybody pay nothing) with the forkserver
context: a clean process that does not inherit the node's sockets, threads or event loop, nor its
logging set-up. Each worker's initialiser configures logging as the node's (JSON lines, warnings
included), imports face_recognition and loads the face detector (TC_FACE_DETECTOR) once.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import numpy as np

from core.config.identity import DEFAULT_DETECTOR
from core.config.photos import PhotoLimits
from core.logs import LogSettings

from . import worker
from .worker import EnrollResult, FrameResult

T = TypeVar("T")


class FacePool:
    def __init__(self, workers: int = 1, logs: LogSettings | None = None,
                 detector: str = DEFAULT_DETECTOR) -> None:
        self.workers = max(1, workers)
        self.logs = logs  # None: the workers keep Python's default logging
        self.detector = detector
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("forkserver"),
                initializer=worker.start, initargs=(self.logs, self.detector))
        return self._executor

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a face worker, its models loaded: `fn`, its arguments and result go
        through pickle (a module-level function of worker.py or presence_worker.py, say)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool(), fn, *args)

    async def warm(self) -> None:
        """Start the workers and load the models now, so the first check is not the slow one."""
        await asyncio.gather(*(self.run(worker.initialise, self.detector)
                               for _ in range(self.workers)))

    async def analyse(self, rgb: np.ndarray, known: list[float] | None = None,
                      encode: bool = False, landmarks: bool = False,
                      thumbnail: bool = False) -> FrameResult:
        return await self.run(worker.analyse, rgb, known, encode, landmarks, thumbnail)

    async def enroll(self, data: bytes, min_face_px: int, limits: PhotoLimits) -> EnrollResult:
        return await self.run(worker.enroll, data, min_face_px, limits)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
