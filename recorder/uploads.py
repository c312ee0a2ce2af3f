"""Closed segments on their way to the store: one at a time, in the order they closed, and held
back in the spool (not given up) while the store does not answer.

The recorder's writer thread only seals a closed segment (encrypts and hashes it: `seal`, which
is `store_blocking` given a store that keeps the sealed file aside instead of sending it); this
queue's own thread sends it. So a store that hangs holds no consultation's muxing, and a store
that is away stops no recording: while `put_file` raises StoreUnavailable (refused, timed out
after TC_S3_CONNECT_TIMEOUT/TC_S3_READ_TIMEOUT × TC_S3_MAX_ATTEMPTS, a 5xx) the segment waits,
sealed, in the spool, and is tried again after 1 s, 2 s, 4 s... up to TC_RECORDING_RETRY_MAX_S.
Everything behind it waits too, so segments reach the store and the index in the order they
closed. The first failure is an ops alert and an event (`recording.store_unreachable`) in each
consultation with a segment waiting, its live state says `recording: waiting`; the first upload
that goes through again is `recording.store_restored`. The call itself is never touched.

A local failure is not an outage: a full disk while sealing, or the local store's own OSError,
fails that consultation's recording as before (`ConsultationRecording.fail`).

The plaintext stays in the spool until its segment is indexed, as always: a node stopped or
killed while segments wait sends them at its next start (recovery.py), where they are
`recovered` segments like any other left in the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core import metrics
from core.alerts import Alert, publish_alert
from core.live import LiveState, LiveStateUnavailable
from core.objects.storage import Storage, StoreUnavailable

from .crypto import KeyRing
from .journal import Journal
from .segment import Stored, store_blocking

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
QUEUED = ".queued.enc"  # (recovery drops any *.enc left in the spool, and keeps the plaintext)


class _Aside:
    """What `store_blocking` stores into when sealing: the sealed file is moved aside in the
    spool, for the queue to send. Only `put_file` is called."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def put_file(self, key: str, src: Path, retain_until: datetime | None = None) -> None:
        self.path = src.with_name(src.name.removesuffix(".enc") + QUEUED)
        os.replace(src, self.path)


def seal(path: Path, key: str, keys: KeyRing, retain_until: datetime | None
         ) -> tuple[Stored, Path]:
    """Blocking (the writer thread): encrypt and hash the closed segment; the sealed file's
    path, to hand to `Uploads.send`. Raises OSError (a full disk) like `store_blocking`."""
    aside = _Aside()
    stored = store_blocking(path, key, aside, keys, retain_until)  # type: ignore[arg-type]
    assert aside.path is not None
    return stored, aside.path


@dataclass
class _Upload:
    cid: str
    key: str
    sealed: Path
    retain_until: datetime | None
    done: asyncio.Future[None]


@dataclass
class Outage:
    error: str
    since: float = field(default_factory=time.monotonic)
    since_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    failures: int = 1
    told: set[str] = field(default_factory=set)  # consultations given the event


class Uploads:
    """`journal` takes the outage's events; `recording(cid)`: is `cid` being recorded here
    (only then does its live state say `recording: waiting`)."""

    def __init__(self, journal: Journal, live: LiveState, node_id: str,
                 recording: Callable[[str], bool], storage: Storage,
                 retry_max_s: float) -> None:
        self.journal = journal
        self.live = live
        self.node_id = node_id
        self.recording = recording
        self.storage = storage
        self.retry_max_s = max(FIRST_RETRY_S, retry_max_s)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="recorder-upload")
        self.outage: Outage | None = None
        self._queue: deque[_Upload] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def pending(self, cid: str) -> bool:
        """Segments of `cid` still waiting for the store (their files are in the spool)."""
        return any(item.cid == cid for item in self._queue)

    async def send(self, cid: str, key: str, sealed: Path,
                   retain_until: datetime | None) -> None:
        """Until the store has it. Raises StoreUnavailable only when the node is shutting down
        during an outage (the spool keeps the segment for the next start); a local OSError as
        it comes."""
        item = _Upload(cid, key, sealed, retain_until,
                       asyncio.get_running_loop().create_future())
        self._queue.append(item)
        metrics.RECORDING_WAITING.set(len(self._queue))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="recording-uploads")
        await asyncio.shield(item.done)

    def _put(self, item: _Upload) -> None:
        self.storage.put_file(item.key, item.sealed, item.retain_until)
        item.sealed.unlink(missing_ok=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = FIRST_RETRY_S
        while self._queue:
            item = self._queue[0]
            began = time.monotonic()
            try:
                await loop.run_in_executor(self.executor, self._put, item)
            except StoreUnavailable as exc:
                if self._closing.is_set():
                    self._give_back(exc)
                    return
                await self._down(exc, began)
                with contextlib.suppress(TimeoutError):  # back off; at once on shutdown
                    await asyncio.wait_for(self._closing.wait(), delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            except Exception as exc:  # local: the sealed file, the local store's disk
                self._pop(item).set_exception(exc)
                continue
            delay = FIRST_RETRY_S
            self._pop(item)
            if self.outage is not None:
                await self._up()
            if not item.done.done():
                item.done.set_result(None)

    def _pop(self, item: _Upload) -> asyncio.Future[None]:
        self._queue.popleft()
        metrics.RECORDING_WAITING.set(len(self._queue))
        return item.done

    def _give_back(self, exc: StoreUnavailable) -> None:
        while self._queue:
            item = self._queue[0]
            item.sealed.unlink(missing_ok=True)  # sealed again from the plaintext at start
            self._pop(item).set_exception(exc)

    def stop_retrying(self) -> None:
        """The node is shutting down: what the store still refuses stays in the spool for the
        next start. What it takes is still sent (the recordings being stopped wait for it)."""
        self._closing.set()

    async def close(self) -> None:
        self._closing.set()
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)
        self.executor.shutdown(wait=True)

    # -- telling ops and the event log ---------------------------------------------------------

    async def _down(self, exc: StoreUnavailable, began: float) -> None:
        """`began`: when the failed upload started (a hung store fails it only after the
        timeouts): the outage is counted from there."""
        first = self.outage is None
        if self.outage is None:
            ago = time.monotonic() - began
            self.outage = Outage(exc.detail, began,
                                 datetime.now(UTC) - timedelta(seconds=ago))
            log.error("recorder: the store is unreachable; segments wait in the spool: %s",
                      exc.detail)
        else:
            self.outage.failures += 1
            self.outage.error = exc.detail
        outage = self.outage
        cids = sorted({i.cid for i in self._queue} - outage.told)
        outage.told.update(cids)
        if first:
            await self._alert("recording.store_unreachable",
                              f"录像存储不可达 {self.storage.description}: unreachable; "
                              f"{len(self._queue)} segment(s) wait in the spool",
                              {"error": exc.detail, "waiting": len(self._queue),
                               "consultations": cids})
        for cid in cids:
            await self._tell(cid, "recording.store_unreachable", {
                "error": exc.detail, "since": outage.since_at.isoformat(),
                "waiting": sum(i.cid == cid for i in self._queue)}, "waiting")

    async def _up(self) -> None:
        outage, self.outage = self.outage, None
        assert outage is not None
        took = round(time.monotonic() - outage.since, 1)
        log.warning("recorder: the store answers again after %.1f s; %d segment(s) still to "
                    "send", took, len(self._queue))
        await self._alert("recording.store_restored",
                          f"录像存储恢复 {self.storage.description}: reachable again after "
                          f"{took} s; the spool is being sent",
                          {"outage_s": took, "waiting": len(self._queue),
                           "consultations": sorted(outage.told)})
        for cid in sorted(outage.told):
            await self._tell(cid, "recording.store_restored", {
                "outage_s": took, "failures": outage.failures,
                "since": outage.since_at.isoformat()}, "on")

    async def _alert(self, kind: str, text: str, data: dict) -> None:
        # Redis away too: the log and the consultations' events still say it.
        await publish_alert(self.live, Alert(kind, text, self.node_id, None, data))

    async def _tell(self, cid: str, kind: str, data: dict, live: str) -> None:
        try:
            await self.journal.event(cid, kind, data)
        except Exception:
            log.exception("recorder: %s event for %s", kind, cid)
        if self.recording(cid):
            with contextlib.suppress(LiveStateUnavailable):
                await self.live.put_consultation(cid, {"recording": live})
