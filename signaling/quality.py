"""What each page says it receives (issue 11): passed to the other side and kept for ops.

The node's own statistics describe what it receives; only the page knows what is *delivered* to
it (frames shown, freezes, concealed audio). Each page reports that every few seconds in a
`quality` message; the node forwards it to the other participant, whose page shows "the doctor's
connection is weak", and merges it into the participant's live stats under `delivered`, which the
ops page shows. At most one report a second per participant is taken: the rest are dropped
quietly, as a report is only ever a newer reading of the same figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from core import metrics
from core.auth import Role
from core.live import LiveStateUnavailable

from . import protocol
from .protocol import Quality
from .room import OTHER, Room

MIN_INTERVAL_S = 1.0


@dataclass
class QualityGate:
    """One per participant's socket (a participant has one at a time): at most one report per
    `interval_s`."""

    interval_s: float = MIN_INTERVAL_S
    last: float | None = None
    dropped: int = 0

    def admit(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.last is not None and now - self.last < self.interval_s:
            self.dropped += 1
            return False
        self.last = now
        return True


async def relay(room: Room, gate: QualityGate, role: Role, report: Quality) -> bool:
    """Forward one report to the other participant and into the live state; False if dropped."""
    if not gate.admit():
        return False
    delivered = {"level": report.level, **report.figures, "at": round(time.time(), 1)}
    await room.send(OTHER[role], protocol.quality(role, delivered))
    try:
        await room.ctx.live.put_participant(room.consultation_id, str(role),
                                            {"delivered": delivered})
    except LiveStateUnavailable:
        metrics.LIVE_STATE_ERRORS.inc()
    return True
