"""One participant's media on the consultation's clock, by the sender's own clock.

A sender's RTCP sender reports map each kind's RTP time to its NTP clock, the clock it captured
both kinds on (that is how a receiver keeps lip-sync). Every packet is placed at its capture time
on that clock plus ONE offset per participant, from the sender's clock to the consultation's: so
audio and video stay together whichever of them was sent or arrived late.

The offset is the smallest (arrival - capture time) seen: the packets that came fastest, so late
first packets, jitter or a backlog never bias it (an arrival-anchored timeline keeps whatever
delay its first packet had: issue 12 item 7). It only goes down at once; it goes up only when
every packet for REANCHOR_WINDOW_MS was more than REANCHOR_MS later than it predicts (a sender
whose clock stepped or restarted), and then for both kinds together.

A kind with no sender report (none came within the wait, see participant.py) is placed by its
own RTP time and arrival, the same way but with its own offset: in sync only as far as arrival
allows, and logged.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

REANCHOR_MS = 1000.0
REANCHOR_WINDOW_MS = 5000.0


class Offset:
    """The offset (ms) from one clock to the consultation's, kept as the least delay seen."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.ms: float | None = None
        self._late_since: float | None = None  # arrival of the first of a run of late packets
        self._late_by = 0.0  # the least excess over that run

    def seed(self, ms: float) -> None:
        """Start from the least delay of packets held for the first report."""
        self.ms = ms if self.ms is None else min(self.ms, ms)

    def place(self, arrival_ms: float, clock_ms: float) -> float:
        """Where a packet captured at `clock_ms` (on this clock) lies on the consultation's."""
        delay = arrival_ms - clock_ms
        if self.ms is None or delay < self.ms:
            self.ms = delay
            self._late_since = None
        elif delay - self.ms > REANCHOR_MS:
            if self._late_since is None:
                self._late_since, self._late_by = arrival_ms, delay - self.ms
            else:
                self._late_by = min(self._late_by, delay - self.ms)
                if arrival_ms - self._late_since >= REANCHOR_WINDOW_MS:
                    log.warning("recorder: %s re-anchored %+.0f ms (its clock moved)",
                                self.what, self._late_by)
                    self.ms += self._late_by
                    self._late_since = None
        else:
            self._late_since = None
        return clock_ms + self.ms
