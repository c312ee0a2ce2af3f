"""`python -m server verify-recordings CID` and `rewrap-recordings [CID ...]`: offline."""

from __future__ import annotations

import json

from core.config import Settings
from core.objects.store_factory import open_storage
from core.store import Database, EventLog

from . import integrity
from .keys import KeyRing
from .rewrap import rewrap_recordings


async def verify_recordings(settings: Settings, cid: str) -> int:
    """Print the report as JSON, log it as an event; exit status 0 only when all is intact.
    Hashes the stored (encrypted) bytes: no recording key is needed."""
    db = await Database.open(settings.database_url)
    try:
        events = EventLog(db)
        storage = open_storage(settings.store, settings.recordings_dir / "store", "recordings")
        report = await integrity.verify(db, events, storage, cid)
        await events.append(cid, "recording.verified", "system:cli", report.event_data())
    finally:
        await db.close()
    print(json.dumps(report.public(), ensure_ascii=False, indent=2))
    return 0 if report.ok else 1


async def rewrap(settings: Settings, cids: list[str]) -> int:
    """Rewrap stored segments' data keys under TC_RECORDING_KEY (recorder/rewrap.py); prints
    the report as JSON; exit status 0 unless a segment could not be rewrapped."""
    db = await Database.open(settings.database_url)
    try:
        storage = open_storage(settings.store, settings.recordings_dir / "store", "recordings")
        keys = KeyRing(settings.recording_key, settings.recording_old_keys)
        report = await rewrap_recordings(db, EventLog(db), storage, keys, cids or None)
    finally:
        await db.close()
    print(json.dumps(report.public(), ensure_ascii=False, indent=2))
    return 0 if report.ok else 1
