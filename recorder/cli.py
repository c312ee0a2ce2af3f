"""`python -m server verify-recordings CID`: check a consultation's recording offline."""

from __future__ import annotations

import json

from server.config import Settings
from server.store import Database, EventLog

from . import integrity
from .store_config import open_storage


async def verify_recordings(settings: Settings, cid: str) -> int:
    """Print the report as JSON, log it as an event; exit status 0 only when all is intact."""
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
