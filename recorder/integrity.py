"""Is a consultation's recording whole and unaltered?

Three witnesses must agree: the consultation's hash-chained event log (one `recording.segment`
or `recording.recovered` event per stored segment, with its SHA-256 and size, and one
`recording.purged` per deletion), the recordings index (a plain table, editable by whoever holds
the database), and the stored objects themselves. The log is the reference: an index row edited
or removed together with its file is caught against the log, and the log itself is verified
first, so editing it is caught too.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from core.objects.storage import Storage
from core.store import Database, EventLog
from core.store.recordings import RecordingSegment

from . import index

SEGMENT_EVENTS = ("recording.segment", "recording.recovered")


@dataclass
class VerifyReport:
    consultation_id: str
    ok: bool
    checked: int = 0
    missing: list[str] = field(default_factory=list)  # indexed, but no stored object
    altered: list[str] = field(default_factory=list)  # stored object differs from its hash
    extra: list[str] = field(default_factory=list)  # stored, but in neither index nor log
    index: list[str] = field(default_factory=list)  # index disagrees with the event log
    chain: list[str] = field(default_factory=list)  # the event log's own problems
    purged: int = 0

    def public(self) -> dict[str, Any]:
        return asdict(self)

    def event_data(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "missing": self.missing,
                "altered": self.altered, "extra": self.extra, "index": self.index,
                "chain": self.chain}


async def verify(db: Database, events: EventLog, storage: Storage, cid: str,
                 being_logged: frozenset[str] = frozenset()) -> VerifyReport:
    """`being_logged`: segments indexed whose event is being appended right now (a live call).
    The log is read before the index, so every logged segment is already indexed."""
    chain = await events.verify(cid)  # reads the log once: checked, then compared
    logged = [(ev.kind, ev.data) for ev in chain.events
              if ev.kind in SEGMENT_EVENTS or ev.kind == "recording.purged"]
    rows = await index.segments(db, cid)
    report = await asyncio.to_thread(verify_stored, storage, cid, rows)
    report.chain = chain.problems
    report.index = cross_check([row for row in rows if row.id not in being_logged], logged)
    report.ok = report.ok and not report.chain and not report.index
    return report


def cross_check(rows: list[RecordingSegment],
                logged: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """What the index says against what the event log says, segment by segment."""
    stored = {d["segment"]: d for kind, d in logged if kind in SEGMENT_EVENTS}
    purged = {d["segment"] for kind, d in logged if kind == "recording.purged"}
    problems = []
    by_id = {row.id: row for row in rows}
    for sid, d in stored.items():
        row = by_id.get(sid)
        if row is None:
            problems.append(f"segment {sid} ({d.get('role')} #{d.get('seq')}) is in the event "
                            "log but not in the index")
        elif (row.sha256, row.size) != (d.get("sha256"), d.get("size")):
            problems.append(f"segment {sid}: the index's hash or size differs from the event log")
        elif row.state == "purged" and sid not in purged:
            problems.append(f"segment {sid}: marked purged with no purge event")
    problems += [f"segment {row.id} is in the index but was never logged"
                 for row in rows if row.id not in stored]
    return problems


def verify_stored(storage: Storage, cid: str, rows: list[RecordingSegment]) -> VerifyReport:
    """Blocking: re-hash the stored objects under `cid/` against the index rows."""
    report = VerifyReport(cid, ok=True)
    expected = set()
    for seg in rows:
        if seg.state == "purged":
            report.purged += 1
            continue
        expected.add(seg.storage_key)
        report.checked += 1
        size = storage.size(seg.storage_key)
        if size is None:
            report.missing.append(seg.storage_key)
            continue
        digest, offset = hashlib.sha256(), 0
        while offset < size:
            block = storage.read_at(seg.storage_key, offset, 1 << 20)
            if not block:
                break
            digest.update(block)
            offset += len(block)
        if size != seg.size or digest.hexdigest() != seg.sha256:
            report.altered.append(seg.storage_key)
    report.extra = [k for k in storage.keys(f"{cid}/") if k not in expected]
    report.ok = not (report.missing or report.altered or report.extra)
    return report
