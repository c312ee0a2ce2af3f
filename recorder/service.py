"""The node's recorder: starts and stops consultation recordings, recovers after a crash,
purges expired segments, verifies integrity and opens segments for playback.

Muxing, encryption, hashing and file I/O all run in one writer thread (`executor`), in order;
the event loop only hands packets over. The lifecycle tells the recorder when a consultation
becomes `active` and when it ends (`on_transition`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from core import calls, metrics
from core.alerts import Alert, publish_alert
from core.calls import CallRoom
from core.context import NodeContext
from core.lifecycle import State, Transition
from core.live import LiveStateUnavailable
from core.objects.storage import Storage, StoreRefused
from core.objects.store_factory import open_storage
from core.store.recordings import Recording, RecordingSegment

from . import index, integrity
from .consultation import ConsultationRecording
from .crypto import Decryptor
from .integrity import VerifyReport
from .journal import ACTOR
from .keys import KeyRing, WrappedKey
from .playback import PlaybackTokens
from .recovery import recover_spool
from .segment import Stored
from .uploads import Uploads
from .webm import MuxStats

log = logging.getLogger(__name__)

RECOVER_RETRY_S = 30.0  # how often spool files waiting for another node's recording are retried


class Recorder:
    """Builds the parts of recording (ConsultationRecording, Uploads, recover_spool) and is
    their Journal (journal.py): they report back through it, never import this module."""

    def __init__(self, ctx: NodeContext, room_of: Callable[[str], CallRoom | None],
                 storage: Storage | None = None) -> None:
        self.ctx = ctx
        self.room_of = room_of
        self.settings = ctx.settings
        self.keys = KeyRing(self.settings.recording_key, self.settings.recording_old_keys)
        root = self.settings.recordings_dir
        self.spool = root / "spool"
        self.storage: Storage = storage or open_storage(self.settings.store, root / "store",
                                                        "recordings")
        self.store_status: dict[str, Any] = {"backend": self.settings.store.kind}
        self.key_status: dict[str, Any] = {"key_id": self.keys.current_id}
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="recorder")
        self.active: dict[str, ConsultationRecording] = {}
        # Sealed segments to the store, in order, held back while it is away (uploads.py).
        self.uploads = Uploads(self, ctx.live, self.settings.node_id, self.active.__contains__,
                               self.storage, self.settings.recording_retry_max_s)
        self._purger: asyncio.Task[None] | None = None
        self._retry: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._being_logged: set[str] = set()  # segments indexed, their event not yet appended
        self.playback = PlaybackTokens(self.settings.token_secret)

    async def event(self, cid: str, kind: str, data: dict[str, Any],
                    actor: str = ACTOR) -> None:
        await self.ctx.events.append(cid, kind, actor, data)

    # -- lifecycle ---------------------------------------------------------------------------

    async def on_transition(self, change: Transition) -> None:
        try:
            if change.state == State.ACTIVE and self.settings.recording_enabled:
                await self.start(change.consultation_id)
            elif change.state.final:
                # In its own task: the caller (a socket's handler) may be cancelled as the
                # room closes, and closing the last segments must not be cut short by that.
                task = asyncio.create_task(self.stop(change.consultation_id, str(change.state)))
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)
        except Exception:  # the call must go on even if recording cannot
            log.exception("recorder: %s of %s", change.state, change.consultation_id)

    async def wait_stopped(self) -> None:
        """Until every recording that is stopping has stored its last segments."""
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    async def start(self, cid: str) -> ConsultationRecording | None:
        room = self.room_of(cid)
        if room is None or cid in self.active:
            return self.active.get(cid)
        row = await index.start_recording(self.ctx.db, cid, datetime.now(UTC))
        rec = ConsultationRecording(self, cid, row.epoch_at, executor=self.executor,
                                    spool=self.spool, keys=self.keys, uploads=self.uploads,
                                    segment_s=self.settings.recording_segment_s)
        for role, participant in room.participants.items():
            rec.attach(role, participant.sources,
                       await index.max_seq(self.ctx.db, cid, str(role)) + 1)
        self.active[cid] = rec
        await self.event(cid, "recording.started", {
            "epoch": row.epoch_at.isoformat(), "segment_s": self.settings.recording_segment_s,
            "key_id": self.keys.current_id, "participants": sorted(rec.participants)})
        with contextlib.suppress(LiveStateUnavailable):
            await self.ctx.live.put_consultation(cid, {"recording": "on"})
        return rec

    async def resume(self, room: CallRoom, state: State) -> None:
        """A consultation re-homed here while active: record on, in new segments."""
        await self.start(room.consultation_id)

    async def stop(self, cid: str, why: str) -> None:
        try:
            await self._stop(cid, why)
        except Exception:
            log.exception("recorder: stopping %s", cid)

    async def _stop(self, cid: str, why: str) -> None:
        rec = self.active.pop(cid, None)
        if rec is not None:
            await rec.stop()
            if rec.failed is None:
                await self.event(cid, "recording.stopped", {
                    "reason": why, "segments": rec.closed_segments})
        row = await index.get_recording(self.ctx.db, cid)
        if row is None:
            return
        consultation = await self.ctx.lifecycle.state(cid)
        values: dict[str, Any] = {}
        if rec is not None and rec.failed is None:
            values["status"] = "complete" if consultation.final else "interrupted"
        if consultation.final:
            ended = datetime.now(UTC)
            values["ended_at"] = ended
            values["retain_until"] = self.retain_from(ended)
        if values:
            await index.update_recording(self.ctx.db, cid, **values)

    def retain_from(self, at: datetime) -> datetime:
        return index.retain_until(at, self.settings.retention_years)

    async def recording_failed(self, rec: ConsultationRecording, error: str) -> None:
        """Stop this consultation's recording cleanly, tell ops and the event log."""
        self.active.pop(rec.cid, None)
        metrics.RECORDING_ERRORS.inc()
        await index.update_recording(self.ctx.db, rec.cid, status="failed", error=error[:500])
        await self.event(rec.cid, "recording.failed", {"error": error,
                                                       "segments": rec.closed_segments})
        with contextlib.suppress(Exception):
            await self.ctx.live.put_consultation(rec.cid, {"recording": "failed"})
        await publish_alert(self.ctx.live, Alert(
            "recording.failed", f"录像失败，问诊继续 Recording failed, the call goes on: {error}",
            self.settings.node_id, rec.cid, {"error": error}))
        room = self.room_of(rec.cid)
        if room is not None:
            await room.broadcast(calls.notice(
                "recording_failed", "录像写入失败，已通知运维；问诊继续",
                "Recording failed; operations alerted. The call goes on."))
        rec.stopped = True
        for participant in rec.participants.values():
            await participant.stop()

    async def index_segment(self, cid: str, epoch_at: datetime, role: str, seq: int,
                            t_start_ms: int, stats: MuxStats, stored: Stored,
                            state: str) -> RecordingSegment:
        values = index.segment_values(cid, epoch_at, role, seq, t_start_ms, stats, stored, state)
        row = await index.save_segment(self.ctx.db, values)
        metrics.RECORDING_BYTES.inc(stored.size)
        self._being_logged.add(row.id)
        try:
            await self.event(cid, "recording.segment" if state == "closed"
                             else "recording.recovered", {
                "segment": row.id, "role": role, "seq": seq, "state": state,
                "sha256": stored.sha256, "size": stored.size, "key_id": stored.key_id,
                "duration_ms": stats.duration_ms, "t_start_ms": t_start_ms,
                "started_at": values["started_at"].isoformat(),
                "ended_at": values["ended_at"].isoformat(),
                "video_packets": stats.video_packets, "audio_packets": stats.audio_packets})
        finally:
            self._being_logged.discard(row.id)
        # A hold set while this segment was being stored: the hold's own pass (set_hold) may
        # have listed the segments before this row existed.
        recording = await index.get_recording(self.ctx.db, cid)
        if recording is not None and recording.legal_hold:
            await asyncio.to_thread(self.storage.set_legal_hold, stored.storage_key, True)
        return row

    # -- start-up and shutdown ---------------------------------------------------------------

    async def open(self) -> None:
        """Check the store, recover what a previous run left unfinished, start the purge job."""
        self.check_key()
        await self.check_store()
        waiting = await recover_spool(self)
        if waiting:
            self._retry = asyncio.create_task(self._recover_later(waiting),
                                              name="recording-recover")
        if self.settings.purge_interval_s > 0:
            self._purger = asyncio.create_task(self._purge_loop(), name="recording-purge")

    async def _recover_later(self, waiting: set[str]) -> None:
        """Spool files of a consultation another node was still recording at start: recovered
        once that recording has ended."""
        while waiting:
            await asyncio.sleep(RECOVER_RETRY_S)
            try:
                waiting = await recover_spool(self, only=waiting)
            except Exception:
                log.exception("recorder: spool recovery failed; retrying")

    def check_key(self) -> None:
        """A node of several nodes with a master key of its own (TC_RECORDING_KEY unset): it
        records, but no other node can replay, verify-decrypt or recover what it stores. Said
        loudly, in the log at every start and in /readyz; not refused: the call must go on,
        and nothing is lost (the key is in <data>/recording-key; adding it to every node's
        TC_RECORDING_OLD_KEYS and running `rewrap-recordings` brings those segments under the
        shared key)."""
        shared = self.settings.redis_url is not None or self.settings.store.kind != "local"
        self.key_status = {"key_id": self.keys.current_id,
                           "source": "node" if self.settings.recording_key_from_file
                           else "environment"}
        if shared and self.settings.recording_key_from_file:
            detail = ("TC_RECORDING_KEY is not set on a node of several (REDIS_URL or a shared "
                      f"store): its recordings are sealed under master key {self.keys.current_id}"
                      f", kept only in {self.settings.data_dir / 'recording-key'}, which no other"
                      " node has; set the same TC_RECORDING_KEY on every node")
            self.key_status["warning"] = detail
            log.warning("recorder: %s", detail)

    async def check_store(self) -> None:
        """Does the store itself enforce retention? Said in the log and in /readyz. A store that
        cannot be reached at all raises: the node does not start recording into it."""
        lock = await asyncio.to_thread(lambda: self.storage.object_lock)
        where = self.storage.description
        if lock:
            detail = f"{where}: the store enforces retention and legal holds (Object Lock)"
            log.info("recorder: %s", detail)
        else:
            why = getattr(self.storage, "lock_detail", "") or "no object lock"
            detail = (f"{where}: {why}; retention and legal holds are enforced by the "
                      "database and the purge job only")
            if self.settings.store.kind == "local":
                log.info("recorder: %s", detail)
            else:
                log.warning("recorder: %s", detail)
        self.store_status = {"backend": self.settings.store.kind, "object_lock": lock,
                             "detail": detail}

    async def _purge_loop(self) -> None:
        while True:
            try:
                await self.purge()
            except Exception:
                log.exception("recording purge failed; retrying at the next interval")
            await asyncio.sleep(self.settings.purge_interval_s)

    async def close(self) -> None:
        for task in (self._purger, self._retry):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Segments the store still refuses stay in the spool for the next start, rather than
        # holding the shutdown until the store returns.
        self.uploads.stop_retrying()
        await self.wait_stopped()
        for cid in list(self.active):
            await self.stop(cid, "node shutting down")
        await self.uploads.close()
        self.executor.shutdown(wait=True)

    # -- retention ---------------------------------------------------------------------------

    async def purge(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Delete segments past retain_until, except under legal hold; each deletion an event.

        A segment the store will not let go yet (its Object Lock retention or legal hold still
        holds) keeps its row: the refusal is logged and an event, and the next purge retries."""
        now = now or datetime.now(UTC)
        done: list[dict[str, Any]] = []
        for recording, seg in await index.expired(self.ctx.db, now):
            if recording.legal_hold:
                continue
            try:
                existed = await asyncio.to_thread(self.storage.delete, seg.storage_key)
            except StoreRefused as exc:
                log.warning("recorder: purge of %s refused by the store: %s", seg.storage_key,
                            exc.reason)
                await self.event(seg.consultation_id, "recording.purge_refused", {
                    "segment": seg.id, "role": seg.role, "seq": seg.seq,
                    "reason": exc.reason}, actor="system:retention")
                continue
            await index.mark_purged(self.ctx.db, seg.id, now)
            item = {"segment": seg.id, "role": seg.role, "seq": seg.seq, "sha256": seg.sha256,
                    "retain_until": recording.retain_until.isoformat()
                    if recording.retain_until else None, "file_existed": existed}
            await self.event(seg.consultation_id, "recording.purged", item,
                             actor="system:retention")
            done.append(item)
        return done

    async def set_hold(self, cid: str, actor: str, reason: str, hold: bool) -> Recording:
        row = await index.get_recording(self.ctx.db, cid)
        if row is None:
            raise LookupError(cid)
        # The store's holds first: should this fail, the database still says what it said
        # (a hold in the store but not in the database only makes a purge be refused). Then
        # again for a segment indexed meanwhile, which read the database's hold before it changed.
        done: set[str] = set()
        await self._store_holds(cid, hold, done)
        now = datetime.now(UTC)
        await index.update_recording(self.ctx.db, cid, legal_hold=hold, hold_reason=reason,
                                     hold_by=actor, hold_at=now)
        await self._store_holds(cid, hold, done)
        await self.event(cid, "recording.hold.set" if hold else "recording.hold.lifted",
                         {"reason": reason}, actor=actor)
        updated = await index.get_recording(self.ctx.db, cid)
        assert updated is not None
        return updated

    async def _store_holds(self, cid: str, hold: bool, done: set[str]) -> None:
        for seg in await index.segments(self.ctx.db, cid):
            if seg.state != "purged" and seg.id not in done:
                await asyncio.to_thread(self.storage.set_legal_hold, seg.storage_key, hold)
                done.add(seg.id)

    # -- integrity and playback --------------------------------------------------------------

    async def verify(self, cid: str) -> VerifyReport:
        """Re-hash every stored segment; check the index against the event log."""
        return await integrity.verify(self.ctx.db, self.ctx.events, self.storage, cid,
                                      frozenset(self._being_logged))

    def decryptor(self, seg: RecordingSegment) -> Decryptor:
        """Blocking: the plaintext view of a stored segment (call in a thread)."""
        size = self.storage.size(seg.storage_key)
        if size is None:
            raise FileNotFoundError(seg.storage_key)
        return Decryptor(lambda o, n: self.storage.read_at(seg.storage_key, o, n), size,
                         self.keys, wrapped_of(seg))


# Beside the Recorder: the routes and the app that builds the Recorder both find it here.
RECORDER_KEY = web.AppKey("recorder", Recorder)


def wrapped_of(seg: RecordingSegment) -> WrappedKey | None:
    """The segment's wrapped data key from its index row (None: a version-1 segment)."""
    if seg.wrapped_key is None:
        return None
    return WrappedKey.from_text(seg.key_id, seg.wrapped_key)

