"""The recording of one consultation: its shared clock, its participants, its closed segments.

Lives from `active` to the end of the consultation. Each closed segment lands in the index and,
with its hash, in the consultation's event log, in the order the segments close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from core.auth import Role
from core.objects.storage import StoreUnavailable

from .journal import Journal
from .keys import KeyRing
from .participant import ParticipantRecorder
from .segment import OpenSegment, discard_spool, storage_key
from .uploads import Uploads, seal

log = logging.getLogger(__name__)


class Owner(Journal, Protocol):
    """The Recorder, as a consultation's recording reports to it."""

    async def recording_failed(self, rec: ConsultationRecording, error: str) -> None:
        """Stop this recording (not the call) and say so."""


class ConsultationRecording:
    """`executor` is the recorder's one writer thread, `spool` its working folder, `keys` what
    segments are sealed under, and `uploads` the queue to the store (all shared by every
    consultation); `segment_s` the grid segments are cut on."""

    def __init__(self, owner: Owner, cid: str, epoch_at: datetime, *, executor: Executor,
                 spool: Path, keys: KeyRing, uploads: Uploads, segment_s: float) -> None:
        self.owner = owner
        self.executor = executor
        self.spool = spool
        self.keys = keys
        self.uploads = uploads
        self.cid = cid
        self.epoch_at = epoch_at
        self.epoch_mono = time.monotonic() - (datetime.now(UTC) - epoch_at).total_seconds()
        self.segment_ms = int(segment_s * 1000)
        self.participants: dict[str, ParticipantRecorder] = {}
        self.stopped = False
        self.failed: str | None = None
        self.closed_segments = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._order = asyncio.Lock()

    def attach(self, role: Role, sources: dict, first_seq: int) -> None:
        self.participants[str(role)] = ParticipantRecorder(self, str(role), sources, first_seq)

    # -- called by participants, on the loop -------------------------------------------------

    def open_segment(self, role: str, seq: int, t_ms: int) -> OpenSegment:
        boundary = (t_ms // self.segment_ms + 1) * self.segment_ms
        return OpenSegment(self.executor, self.spool, self.cid, role, seq, t_ms, boundary,
                           self.keys)

    def finish(self, seg: OpenSegment) -> None:
        task = asyncio.create_task(self._finish(seg), name=f"finish-{seg.path.name}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def gap(self, role: str, from_ms: int, to_ms: int) -> None:
        self._spawn(self.owner.event(self.cid, "recording.gap", {
            "role": role, "from_ms": from_ms, "to_ms": to_ms,
            "seconds": round((to_ms - from_ms) / 1000, 3),
            "from": self._at(from_ms).isoformat(), "to": self._at(to_ms).isoformat()}))

    def fail(self, error: str) -> None:
        """A write failed (disk full...): stop recording this consultation, keep the call."""
        if self.failed is None and not self.stopped:
            self.failed = error
            self._spawn(self.owner.recording_failed(self, error))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _at(self, t_ms: int) -> datetime:
        return self.epoch_at + timedelta(milliseconds=t_ms)

    # -- closing -----------------------------------------------------------------------------

    async def _finish(self, seg: OpenSegment) -> None:
        loop = asyncio.get_running_loop()
        seg.flush()
        stats = await loop.run_in_executor(self.executor, seg.close_blocking)
        if stats is None:
            if seg.error:
                self.fail(seg.error)
            return
        key = storage_key(self.cid, seg.role, seg.seq)
        retain = self.owner.retain_from(datetime.now(UTC))
        try:  # encrypt and hash in the writer thread; a full disk fails the recording
            stored, sealed = await loop.run_in_executor(
                self.executor, seal, seg.path, key, self.keys, retain)
            # The store away is not a failure: the segment waits in the spool (uploads.py).
            await self.uploads.send(self.cid, key, sealed, retain)
        except StoreUnavailable as exc:  # still away as the node shuts down
            log.warning("recorder: %s stays in the spool for the next start: %s",
                        seg.path.name, exc.detail)
            return
        except OSError as exc:
            self.fail(f"{type(exc).__name__}: {exc}")
            return
        async with self._order:
            await self.owner.index_segment(self.cid, self.epoch_at, seg.role, seg.seq,
                                           seg.t_start_ms, stats, stored, "closed")
            self.closed_segments += 1
        await loop.run_in_executor(self.executor, discard_spool, seg.path)

    async def stop(self) -> None:
        """Close every participant's open segment and wait until all are stored and indexed."""
        if self.stopped:
            return
        self.stopped = True
        for participant in self.participants.values():
            await participant.stop()
        while self._pending:
            for result in await asyncio.gather(*list(self._pending), return_exceptions=True):
                if isinstance(result, Exception):
                    log.error("recorder: %s: closing a segment failed", self.cid,
                              exc_info=result)
