"""Start-up recovery: segments a killed process left open, and recordings it never closed.

A spool file is a segment that was being written when the process died. Its name says whose and
which it is; `salvage` keeps every readable packet (the torn tail of at most about a second is
lost), reading it through its encryption (recorder/spool_file.py) and writing the repair the
same way, and the result is encrypted, stored and indexed as `recovered`. A spool file whose
master key this node lacks is left as it is, with an error in the log, for a node (or a restart)
with TC_RECORDING_KEY/TC_RECORDING_OLD_KEYS set right. A file with nothing
readable is recorded as lost. Either way the consultation's event log says what happened, and a
recording still marked `recording` with no live owner becomes `interrupted`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Container
from concurrent.futures import Executor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.exceptions import InvalidTag

from core.objects.storage import Storage

from . import index
from .crypto import Decryptor
from .journal import Journal
from .keys import KeyMissing, KeyRing
from .segment import SPOOL_NAME, discard_spool, storage_key, store_blocking
from .spool_file import SpoolFile
from .uploads import Uploads
from .webm import salvage

if TYPE_CHECKING:
    from core.config import Settings
    from core.context import NodeContext
    from core.store.recordings import RecordingSegment

log = logging.getLogger(__name__)


class SpoolOwner(Journal, Protocol):
    """What recovery needs of the Recorder (service.py), which runs it at start: recovered
    segments go through the same writer thread, keys, store and journal as recorded ones."""

    @property
    def ctx(self) -> NodeContext: ...  # the database, and live state: who records what

    @property
    def settings(self) -> Settings: ...

    @property
    def spool(self) -> Path: ...

    @property
    def keys(self) -> KeyRing: ...

    @property
    def storage(self) -> Storage: ...

    @property
    def executor(self) -> Executor: ...  # the writer thread

    @property
    def active(self) -> Container[str]: ...  # consultations being recorded here

    @property
    def uploads(self) -> Uploads: ...

    def decryptor(self, seg: RecordingSegment) -> Decryptor: ...


def _spool_files(spool: Path) -> list[Path]:
    if not spool.exists():
        return []
    return sorted(p for p in spool.glob("*/*") if p.is_file())


async def recorded_elsewhere(recorder: SpoolOwner, cid: str) -> bool:
    """Is the consultation being recorded now, here or by a live node that took it over? Its
    spool files then wait: recovery numbers on from the highest indexed segment, which is the
    number that node's recorder uses next (its upload would overwrite the recovered one)."""
    if cid in recorder.active or recorder.uploads.pending(cid):
        return True
    owner = await recorder.ctx.live.owner(cid)
    return owner is not None and owner != recorder.settings.node_id


async def recover_spool(recorder: SpoolOwner, only: set[str] | None = None) -> set[str]:
    """Recover the spool (or only these consultations' folders); returns the consultations whose
    files wait for a recording to end."""
    db = recorder.ctx.db
    waiting: set[str] = set()
    for path in await asyncio.to_thread(_spool_files, recorder.spool):
        cid = path.parent.name
        if (only is not None and cid not in only) or cid in waiting:
            continue
        if await recorded_elsewhere(recorder, cid):
            waiting.add(cid)
            continue
        match = SPOOL_NAME.match(path.name)
        recording = await index.get_recording(db, cid)
        if match is None or recording is None:
            if path.suffix in (".enc", ".tmp") or path.name.endswith(".repaired.webm"):
                # Half-finished encryption of a closed file, or of an earlier recovery's repair.
                await asyncio.to_thread(path.unlink)
                continue
            log.warning("recorder: unknown file in the spool, left alone: %s", path)
            continue
        try:
            await _recover_file(recorder, cid, recording.epoch_at, path, match)
        except KeyMissing as exc:
            log.error("recorder: spool file %s left for later: %s", path, exc)
    for recording in await index.recordings_in(db, "recording"):
        cid = recording.consultation_id
        if cid in recorder.active or await recorder.ctx.live.owner(cid) is not None:
            continue
        segments = [s for s in await index.segments(db, cid) if s.state != "purged"]
        recorded_until = max((s.t_start_ms + s.duration_ms for s in segments), default=0)
        await index.update_recording(db, cid, status="interrupted")
        await recorder.event(cid, "recording.interrupted", {
            "reason": "the node stopped without closing the recording (killed or crashed)",
            "segments": len(segments), "recorded_until_ms": recorded_until,
            "segment_s": recorder.settings.recording_segment_s})
    if waiting:
        log.info("recorder: spool files of %s wait until their recording ends", sorted(waiting))
    return waiting


def _stored_copy_of(recorder: SpoolOwner, row: RecordingSegment, path: Path) -> bool:
    """Blocking: is `path` exactly the plaintext of the stored segment `row`? Only then is it a
    leftover: after a failover another node may have stored a different segment under the same
    number."""
    try:
        f = SpoolFile.open(path, recorder.keys)  # (KeyMissing: left for later)
    except ValueError:  # a header cut short: salvage finds it holds nothing
        return False
    with f:
        if row.plain_size != f.size:
            return False
        mine = hashlib.sha256()
        while block := f.read(1 << 20):
            mine.update(block)
    try:
        stored = hashlib.sha256()
        for block in recorder.decryptor(row).read():
            stored.update(block)
    except (OSError, KeyError, ValueError, InvalidTag):  # missing, unreadable or altered
        return False
    return stored.digest() == mine.digest()


async def _recover_file(recorder: SpoolOwner, cid: str, epoch_at, path: Path, match) -> None:
    role, seq, t_start = match["role"], int(match["seq"]), int(match["t"])
    taken = await index.segment_at(recorder.ctx.db, cid, role, seq)
    if taken is not None and await asyncio.get_running_loop().run_in_executor(
            recorder.executor, _stored_copy_of, recorder, taken, path):
        # Stored and indexed, killed before its working copy was dropped: a leftover.
        log.info("recorder: %s is stored and indexed; dropping its working copy", path.name)
        await asyncio.to_thread(discard_spool, path)
        return
    if taken is not None and taken.state != "recovered":  # (recovered: a re-run, replace it)
        # After a failover the node that took over numbered on from what was indexed, so it may
        # have used this number for its own segment: never overwrite that, take the next one.
        seq = await index.max_seq(recorder.ctx.db, cid, role) + 1
    repaired = path.with_name(path.stem + ".repaired.webm")
    loop = asyncio.get_running_loop()
    size = (await asyncio.to_thread(path.stat)).st_size
    stats = await loop.run_in_executor(recorder.executor, salvage, path, repaired,
                                       recorder.keys)
    if stats is None:
        await asyncio.to_thread(path.unlink)
        repaired.unlink(missing_ok=True)
        await recorder.event(cid, "recording.lost", {
            "role": role, "seq": seq, "t_start_ms": t_start, "bytes": size,
            "reason": "an unfinished segment held no readable packet"})
        return
    # The recording's own date once it has ended (another node may have ended it), else from now.
    recording = await index.get_recording(recorder.ctx.db, cid)
    until = (recording.retain_until if recording is not None and recording.retain_until
             else recorder.retain_from(datetime.now(UTC)))
    stored = await loop.run_in_executor(recorder.executor, store_blocking, repaired,
                                        storage_key(cid, role, seq), recorder.storage,
                                        recorder.keys, until)
    await recorder.index_segment(cid, epoch_at, role, seq, t_start, stats, stored, "recovered")
    await asyncio.to_thread(discard_spool, path)
    await asyncio.to_thread(discard_spool, repaired)
