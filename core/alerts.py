"""Ops alerts: one shape, one channel, one way to publish.

Every part of the node that must get a person's attention (identity, guardian presence, the
recorder, the network watch, clustering, severe adverse events) publishes an `Alert` on the live
state's alerts channel, which every ops page on every node follows (server/ops_api.py). An alert
always carries a `kind` and a bilingual `text` the ops page shows as it is; details go in `data`
for whoever reads the stream as JSON. Alerts never carry free text written by patients or
guardians, nor health data beyond what the consultation id already names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core import metrics
from core.live import LiveState, LiveStateUnavailable

log = logging.getLogger(__name__)

ALERTS = "alerts"  # the live state channel


@dataclass(frozen=True)
class Alert:
    kind: str  # dotted, e.g. "recording.failed", "identity.locked"
    text: str  # "中文 English": what the ops page shows
    node: str  # the node that saw it
    consultation: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def message(self) -> dict[str, Any]:
        return {**self.data, "kind": self.kind, "text": self.text, "node": self.node,
                "consultation": self.consultation, "at": datetime.now(UTC).isoformat()}


async def publish_alert(live: LiveState, alert: Alert) -> bool:
    """Publish to every ops page; False when the live state is down (the caller's event log
    entry still records what happened, which is why this does not raise)."""
    try:
        await live.publish(ALERTS, alert.message())
    except LiveStateUnavailable:
        metrics.LIVE_STATE_ERRORS.inc()
        log.warning("live state unavailable: alert %s of %s not published", alert.kind,
                    alert.consultation)
        return False
    return True
