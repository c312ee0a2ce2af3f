"""Live state: in-process on one node, Redis when REDIS_URL is set so several nodes share it."""

from __future__ import annotations

from .base import (
    PARTICIPANTS,
    Info,
    LiveState,
    LiveStateUnavailable,
    Subscription,
    SubscriptionClosed,
)
from .memory import MemoryLiveState
from .redis import RedisLiveState

__all__ = [
    "PARTICIPANTS",
    "Info",
    "LiveState",
    "LiveStateUnavailable",
    "MemoryLiveState",
    "RedisLiveState",
    "Subscription",
    "SubscriptionClosed",
    "make_live_state",
]


def make_live_state(redis_url: str | None, prefix: str = "tc:") -> LiveState:
    """The backend for this configuration (Settings.redis_url); call start() before use."""
    if redis_url:
        return RedisLiveState(redis_url, prefix=prefix)
    return MemoryLiveState()
