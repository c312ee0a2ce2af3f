"""What an impaired link does to one packet: random loss, a rate-limited bounded queue, delay.

Pure logic, no I/O: `Link.offer` says when a packet leaves (or that it is dropped). The queue is
a drop-tail router buffer measured in time: a packet is dropped when it would wait more than
`queue_ms` behind those already queued at the current rate. Changing the rate applies to packets
offered from then on (those queued keep their departure times).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class LinkCounters:
    packets: int = 0
    bytes: int = 0
    lost: int = 0  # random loss
    queue_drops: int = 0  # buffer full
    max_queue_ms: float = 0.0


@dataclass
class Link:
    rate_kbit: float = 0.0  # 0: no rate limit
    delay_ms: float = 0.0
    loss: float = 0.0  # probability 0..1
    queue_ms: float = 250.0
    seed: int | None = None
    counters: LinkCounters = field(default_factory=LinkCounters)
    _busy_until: float = 0.0  # when the last queued packet has been serialized
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def offer(self, size: int, now: float) -> float | None:
        """The time (same clock as `now`, seconds) the packet of `size` bytes is delivered."""
        c = self.counters
        c.packets += 1
        if self.loss and self._random.random() < self.loss:
            c.lost += 1
            return None
        depart = now
        if self.rate_kbit > 0:
            start = max(now, self._busy_until)
            waited_ms = (start - now) * 1000
            if waited_ms > self.queue_ms:
                c.queue_drops += 1
                return None
            c.max_queue_ms = max(c.max_queue_ms, waited_ms)
            depart = self._busy_until = start + size * 8 / (self.rate_kbit * 1000)
        c.bytes += size
        return depart + self.delay_ms / 1000
