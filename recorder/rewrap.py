"""Master key rotation without re-encrypting media: rewrap each segment's data key.

Put the new master key in TC_RECORDING_KEY and the old one in TC_RECORDING_OLD_KEYS on every
node; new segments are wrapped under the new key at once, old ones still open. Then
`python -m server rewrap-recordings [CID ...]` unwraps each older segment's data key and wraps it
again under the current master key, in the index row only: the stored object (written once,
perhaps under Object Lock COMPLIANCE, which no one can rewrite) and so its SHA-256 in the event
log do not change, and integrity checks pass as before. Once it reports nothing left under the
old key, that key can leave TC_RECORDING_OLD_KEYS.

Segments stored before envelope encryption (version 1) were sealed with a master key directly;
rewrapping cannot move them (that would be re-encrypting the media, a new object and a new
hash): they are listed, and open as long as their key stays in TC_RECORDING_OLD_KEYS.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from core.objects.storage import Storage
from core.store import Database, EventLog
from core.store.recordings import RecordingSegment

from . import index
from .crypto import HEADER2_LEN, Header
from .keys import KeyMissing, KeyRing, WrappedKey, WrappedKeyInvalid, rewrap


@dataclass
class RewrapReport:
    to: str  # the current master key's id
    rewrapped: int = 0
    legacy: list[str] = field(default_factory=list)  # version-1 segments: cannot be rewrapped
    missing: dict[str, list[str]] = field(default_factory=dict)  # master key id -> segments
    failed: list[str] = field(default_factory=list)  # wrapped key altered, or object unreadable

    @property
    def ok(self) -> bool:
        return not (self.missing or self.failed)

    def public(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def _new_wrapping(storage: Storage, keys: KeyRing, seg: RecordingSegment) -> WrappedKey:
    """Blocking: the segment's data key under the current master key (reads its header only)."""
    assert seg.wrapped_key is not None
    header = Header.parse(storage.read_at(seg.storage_key, 0, HEADER2_LEN))
    return rewrap(keys, WrappedKey.from_text(seg.key_id, seg.wrapped_key), header.raw)


async def rewrap_recordings(db: Database, events: EventLog, storage: Storage, keys: KeyRing,
                            cids: list[str] | None = None,
                            actor: str = "system:cli") -> RewrapReport:
    """Rewrap every stored segment not under the current master key (of `cids`, or all); one
    `recording.rewrapped` event per consultation with what moved from which key."""
    report = RewrapReport(keys.current_id)
    moved: dict[str, Counter[str]] = {}
    for seg in await index.segments_to_rewrap(db, keys.current_id, cids):
        if seg.wrapped_key is None:
            report.legacy.append(seg.id)
            continue
        try:
            new = await asyncio.to_thread(_new_wrapping, storage, keys, seg)
        except KeyMissing as exc:
            report.missing.setdefault(exc.kid, []).append(seg.id)
            continue
        except (WrappedKeyInvalid, ValueError, OSError) as exc:
            report.failed.append(f"{seg.id}: {exc}")
            continue
        if await index.set_wrapped_key(db, seg.id, seg.wrapped_key, new.kek_id, new.text):
            report.rewrapped += 1
            moved.setdefault(seg.consultation_id, Counter())[seg.key_id] += 1
    for cid, counts in moved.items():
        await events.append(cid, "recording.rewrapped", actor, {
            "to": keys.current_id, "from": dict(counts), "segments": sum(counts.values())})
    return report
