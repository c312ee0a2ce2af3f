"""Redis live state: several nodes share ownership, presence, stats, heartbeats and fan-out.

Keys (under the prefix): `claim:<cid>` owner with TTL; `consultations` set of live ids;
`c:<cid>` hash of JSON fields; `roles:<cid>` set of roles; `p:<cid>:<role>` hash of JSON fields;
`nodes` set of ids and `node:<id>` JSON with TTL; channels are `ch:<name>`. Compare-and-set steps
run as Lua scripts so that they stay atomic across nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import (
    PARTICIPANTS,
    Info,
    LiveState,
    LiveStateUnavailable,
    Subscription,
    checked_consultation,
    checked_role,
)

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

_RECONNECT_S = 0.5

_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
"""

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS: live set, roles set, participant hash. ARGV: consultation id, role, field, value, ...
_PUT_PARTICIPANT = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[2])
if #ARGV > 2 then redis.call('HSET', KEYS[3], unpack(ARGV, 3)) end
return 1
"""

# KEYS: live set, consultation hash, roles set. ARGV: consultation id, participant key prefix.
_DROP_CONSULTATION = """
for _, role in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  redis.call('DEL', ARGV[2] .. role)
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[1], ARGV[1])
return 1
"""

# KEYS: nodes set. ARGV: node key prefix. Returns id, info, id, info...; forgets expired nodes.
_NODES = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local info = redis.call('GET', ARGV[1] .. id)
  if info then
    table.insert(out, id)
    table.insert(out, info)
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
"""


def _unavailable(fn: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """Report any Redis or socket failure as LiveStateUnavailable, whatever the backend."""

    @functools.wraps(fn)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await fn(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise LiveStateUnavailable(f"redis: {exc}") from exc

    return wrapper


def _ms(ttl_s: float) -> int:
    return max(1, round(ttl_s * 1000))


def _fields(info: Info) -> dict[str, str]:
    return {key: json.dumps(value) for key, value in info.items()}


def _decode(fields: dict[str, str]) -> Info:
    return {key: json.loads(value) for key, value in fields.items()}


class RedisLiveState(LiveState):
    """Live state in Redis; every call fails within about `timeout_s` when Redis is down."""

    def __init__(self, url: str, prefix: str = "tc:", timeout_s: float = 3.0):
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_keepalive=True,
            health_check_interval=15,
            # One quick retry reconnects a pooled connection that a Redis restart broke.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        )
        self._subscriptions: set[Subscription] = set()
        self._claim = self._redis.register_script(_CLAIM)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._put_participant = self._redis.register_script(_PUT_PARTICIPANT)
        self._drop_consultation = self._redis.register_script(_DROP_CONSULTATION)
        self._nodes = self._redis.register_script(_NODES)

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    @_unavailable
    async def start(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.aclose()
        await self._redis.aclose()

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    @_unavailable
    async def claim(self, consultation_id: str, node_id: str, ttl_s: float) -> str:
        key = self._key("claim", consultation_id)
        return await self._claim(keys=[key], args=[node_id, _ms(ttl_s)])

    @_unavailable
    async def renew(self, consultation_id: str, node_id: str, ttl_s: float) -> bool:
        key = self._key("claim", consultation_id)
        return bool(await self._renew(keys=[key], args=[node_id, _ms(ttl_s)]))

    @_unavailable
    async def release(self, consultation_id: str, node_id: str) -> bool:
        key = self._key("claim", consultation_id)
        return bool(await self._release(keys=[key], args=[node_id]))

    @_unavailable
    async def owner(self, consultation_id: str) -> str | None:
        return await self._redis.get(self._key("claim", consultation_id))

    @_unavailable
    async def put_consultation(self, consultation_id: str, info: Info) -> None:
        fields = _fields(checked_consultation(info))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self._key("consultations"), consultation_id)
            if fields:
                pipe.hset(self._key("c", consultation_id), mapping=fields)
            await pipe.execute()

    @_unavailable
    async def drop_consultation(self, consultation_id: str) -> None:
        keys = [
            self._key("consultations"),
            self._key("c", consultation_id),
            self._key("roles", consultation_id),
        ]
        await self._drop_consultation(
            keys=keys, args=[consultation_id, self._key("p", consultation_id, "")]
        )

    @_unavailable
    async def consultation(self, consultation_id: str) -> Info | None:
        return (await self._views([consultation_id])).get(consultation_id)

    @_unavailable
    async def live_consultations(self) -> dict[str, Info]:
        ids = sorted(await self._redis.smembers(self._key("consultations")))
        return await self._views(ids)

    async def _views(self, ids: list[str]) -> dict[str, Info]:
        """Consultations with their participants, in two round trips."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.sismember(self._key("consultations"), cid)
                pipe.hgetall(self._key("c", cid))
                pipe.smembers(self._key("roles", cid))
            raw: list[Any] = await pipe.execute()
        views: dict[str, Info] = {}
        roles: list[tuple[str, str]] = []
        for cid, live, info, members in zip(ids, raw[0::3], raw[1::3], raw[2::3], strict=True):
            if live:
                views[cid] = {**_decode(info), PARTICIPANTS: {}}
                roles += [(cid, role) for role in sorted(members)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid, role in roles:
                pipe.hgetall(self._key("p", cid, role))
            participants = await pipe.execute()
        for (cid, role), fields in zip(roles, participants, strict=True):
            views[cid][PARTICIPANTS][role] = _decode(fields)
        return views

    @_unavailable
    async def put_participant(self, consultation_id: str, role: str, info: Info) -> bool:
        keys = [
            self._key("consultations"),
            self._key("roles", consultation_id),
            self._key("p", consultation_id, checked_role(role)),
        ]
        pairs = [item for pair in _fields(info).items() for item in pair]
        return bool(await self._put_participant(keys=keys, args=[consultation_id, role, *pairs]))

    @_unavailable
    async def drop_participant(self, consultation_id: str, role: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key("p", consultation_id, checked_role(role)))
            pipe.srem(self._key("roles", consultation_id), role)
            await pipe.execute()

    @_unavailable
    async def publish(self, channel: str, message: Info) -> None:
        await self._redis.publish(self._key("ch", channel), json.dumps(message))

    @_unavailable
    async def subscribe(self, channel: str) -> Subscription:
        """One pub/sub connection per subscription, subscribed (confirmed) before returning."""
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._key("ch", channel))
            await self._confirmed(pubsub)
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            raise

        async def stop() -> None:
            self._subscriptions.discard(sub)
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

        sub = Subscription(channel, stop)
        pump = asyncio.create_task(self._pump(pubsub, sub))
        self._subscriptions.add(sub)
        return sub

    async def _confirmed(self, pubsub: PubSub) -> None:
        """Wait for Redis to confirm, so a message published after subscribe() is not missed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        while (remaining := deadline - loop.time()) > 0:
            message = await pubsub.get_message(timeout=remaining)
            if message is not None and message["type"] == "subscribe":
                return
        raise RedisTimeoutError("no confirmation of SUBSCRIBE")

    async def _pump(self, pubsub: PubSub, sub: Subscription) -> None:
        """Feed the subscription; across a Redis outage keep trying (redis-py resubscribes).

        Messages published while Redis is down are lost, as with any Redis pub/sub.
        """
        failing = False
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("live: subscription to %s lost Redis: %s", sub.channel, exc)
                failing = True
                await asyncio.sleep(_RECONNECT_S)
                continue
            if failing:
                log.info("live: subscription to %s is back", sub.channel)
                failing = False
            if message is None or message["type"] != "message":
                continue
            try:
                sub.deliver(json.loads(message["data"]))
            except ValueError:
                log.warning("live: dropped a message on %s that is not JSON", sub.channel)

    @_unavailable
    async def heartbeat(self, node_id: str, info: Info, ttl_s: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("node", node_id), json.dumps(info), px=_ms(ttl_s))
            pipe.sadd(self._key("nodes"), node_id)
            await pipe.execute()

    @_unavailable
    async def nodes(self) -> dict[str, Info]:
        flat = await self._nodes(keys=[self._key("nodes")], args=[self._key("node", "")])
        return {flat[i]: json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}
