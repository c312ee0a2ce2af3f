"""What a recording's parts write to: the consultation's event log and the segments index.

The Recorder (service.py) is the one implementation, and it builds the parts (a consultation's
recording, the upload queue, the spool's recovery): they hold it as this Protocol, so they need
not import service.py, and the imports run one way, service -> parts -> this module.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from core.store.recordings import RecordingSegment

    from .segment import Stored
    from .webm import MuxStats

ACTOR = "system:recorder"  # who the recorder's own events are by


class Journal(Protocol):
    async def event(self, cid: str, kind: str, data: dict[str, Any],
                    actor: str = ACTOR) -> None:
        """Append to the consultation's hash-chained event log."""

    async def index_segment(self, cid: str, epoch_at: datetime, role: str, seq: int,
                            t_start_ms: int, stats: MuxStats, stored: Stored,
                            state: str) -> RecordingSegment:
        """A stored segment into the index and, with its hash, the event log."""

    def retain_from(self, at: datetime) -> datetime:
        """Until when what ends (or is stored) at `at` is kept."""
