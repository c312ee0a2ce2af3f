"""`python -m server verify-recordings CID`: re-hash a consultation's stored segments offline."""

from __future__ import annotations

import asyncio
import json

from server.config import Settings
from server.store import Database, EventLog

from . import index
from .service import verify_stored
from .storage import LocalStorage


async def verify_recordings(settings: Settings, cid: str) -> int:
    """Print the report as JSON, log it as an event; exit status 0 only when all is intact."""
    db = await Database.open(settings.database_url)
    try:
        rows = await index.segments(db, cid)
        storage = LocalStorage(settings.recordings_dir / "store")
        report = await asyncio.to_thread(verify_stored, storage, cid, rows)
        await EventLog(db).append(cid, "recording.verified", "system:cli", {
            "ok": report.ok, "checked": report.checked, "missing": report.missing,
            "altered": report.altered, "extra": report.extra})
    finally:
        await db.close()
    print(json.dumps(report.public(), ensure_ascii=False, indent=2))
    return 0 if report.ok else 1
