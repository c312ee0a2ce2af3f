"""In-process live state: the default for one node, needing nothing but Python."""

from __future__ import annotations

import json
import time

from .base import (
    PARTICIPANTS,
    Info,
    LiveState,
    Subscription,
    checked_consultation,
    checked_role,
)


def _copy(info: Info) -> Info:
    """A JSON round trip, so values behave exactly as they would through Redis."""
    return json.loads(json.dumps(info))


class MemoryLiveState(LiveState):
    """Dicts with monotonic-clock expiry; pub/sub through one queue per subscription."""

    def __init__(self) -> None:
        self._claims: dict[str, tuple[str, float]] = {}
        self._consultations: dict[str, Info] = {}
        self._participants: dict[str, dict[str, Info]] = {}
        self._nodes: dict[str, tuple[Info, float]] = {}
        self._subscribers: dict[str, set[Subscription]] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                await sub.aclose()

    async def ping(self) -> bool:
        return True

    def _holder(self, consultation_id: str) -> str | None:
        held = self._claims.get(consultation_id)
        if held is None:
            return None
        if held[1] <= time.monotonic():
            del self._claims[consultation_id]
            return None
        return held[0]

    async def claim(self, consultation_id: str, node_id: str, ttl_s: float) -> str:
        holder = self._holder(consultation_id)
        if holder is None or holder == node_id:
            self._claims[consultation_id] = (node_id, time.monotonic() + ttl_s)
            return node_id
        return holder

    async def renew(self, consultation_id: str, node_id: str, ttl_s: float) -> bool:
        if self._holder(consultation_id) != node_id:
            return False
        self._claims[consultation_id] = (node_id, time.monotonic() + ttl_s)
        return True

    async def release(self, consultation_id: str, node_id: str) -> bool:
        if self._holder(consultation_id) != node_id:
            return False
        del self._claims[consultation_id]
        return True

    async def owner(self, consultation_id: str) -> str | None:
        return self._holder(consultation_id)

    async def put_consultation(self, consultation_id: str, info: Info) -> None:
        fields = _copy(checked_consultation(info))
        self._consultations.setdefault(consultation_id, {}).update(fields)

    async def drop_consultation(self, consultation_id: str) -> None:
        self._consultations.pop(consultation_id, None)
        self._participants.pop(consultation_id, None)

    def _view(self, consultation_id: str) -> Info:
        participants = self._participants.get(consultation_id, {})
        return _copy({**self._consultations[consultation_id], PARTICIPANTS: participants})

    async def consultation(self, consultation_id: str) -> Info | None:
        if consultation_id not in self._consultations:
            return None
        return self._view(consultation_id)

    async def live_consultations(self) -> dict[str, Info]:
        return {cid: self._view(cid) for cid in self._consultations}

    async def put_participant(self, consultation_id: str, role: str, info: Info) -> bool:
        checked_role(role)
        if consultation_id not in self._consultations:
            return False
        roles = self._participants.setdefault(consultation_id, {})
        roles.setdefault(role, {}).update(_copy(info))
        return True

    async def drop_participant(self, consultation_id: str, role: str) -> None:
        self._participants.get(consultation_id, {}).pop(role, None)

    async def publish(self, channel: str, message: Info) -> None:
        payload = json.dumps(message)
        for sub in list(self._subscribers.get(channel, ())):
            sub.deliver(json.loads(payload))

    async def subscribe(self, channel: str) -> Subscription:
        async def forget() -> None:
            subs = self._subscribers.get(channel, set())
            subs.discard(sub)
            if not subs:
                self._subscribers.pop(channel, None)

        sub = Subscription(channel, forget)
        self._subscribers.setdefault(channel, set()).add(sub)
        return sub

    async def heartbeat(self, node_id: str, info: Info, ttl_s: float) -> None:
        self._nodes[node_id] = (_copy(info), time.monotonic() + ttl_s)

    async def nodes(self) -> dict[str, Info]:
        now = time.monotonic()
        for node_id in [n for n, (_, until) in self._nodes.items() if until <= now]:
            del self._nodes[node_id]
        return {node_id: _copy(info) for node_id, (info, _) in self._nodes.items()}
