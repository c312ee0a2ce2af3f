"""Live state: one suite for both backends (`live` runs each test in memory and on a real Redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from core.live import (
    LiveState,
    LiveStateUnavailable,
    MemoryLiveState,
    RedisLiveState,
    SubscriptionClosed,
    make_live_state,
)
from tests.live_fixtures import RedisServer

SHORT_TTL_S = 0.3


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    """Poll until check() holds; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        await asyncio.sleep(0.02)


# Ownership


async def test_second_node_gets_first_owner(live: LiveState, live_peer: LiveState) -> None:
    assert await live.claim("c1", "node-a", 30) == "node-a"
    assert await live_peer.claim("c1", "node-b", 30) == "node-a"
    assert await live_peer.owner("c1") == "node-a"
    assert await live.owner("other") is None


async def test_expired_claim_goes_to_another_node(live: LiveState, live_peer: LiveState) -> None:
    assert await live.claim("c1", "node-a", SHORT_TTL_S) == "node-a"

    async def taken_over() -> bool:
        return await live_peer.claim("c1", "node-b", 30) == "node-b"

    await eventually(taken_over)
    assert await live.owner("c1") == "node-b"
    assert not await live.renew("c1", "node-a", 30)


async def test_only_owner_renews_and_releases(live: LiveState, live_peer: LiveState) -> None:
    await live.claim("c1", "node-a", SHORT_TTL_S)
    assert not await live_peer.renew("c1", "node-b", 30)
    assert not await live_peer.release("c1", "node-b")
    assert await live.renew("c1", "node-a", 30)
    assert await live.claim("c1", "node-a", 30) == "node-a"  # the owner claiming again is fine
    await asyncio.sleep(SHORT_TTL_S * 2)  # past the first TTL: the renewal must have held
    assert await live_peer.owner("c1") == "node-a"
    assert await live.release("c1", "node-a")
    assert await live.owner("c1") is None
    assert not await live.release("c1", "node-a")
    assert await live_peer.claim("c1", "node-b", 30) == "node-b"


# Consultations and participants


async def test_consultation_fields_merge(live: LiveState, live_peer: LiveState) -> None:
    assert await live.consultation("c1") is None
    await live.put_consultation("c1", {"state": "waiting", "node": "node-a"})
    await live_peer.put_consultation("c1", {"state": "active", "started_at": 1767225600.5})
    assert await live.consultation("c1") == {
        "state": "active",
        "node": "node-a",
        "started_at": 1767225600.5,
        "participants": {},
    }


async def test_participants_merge_and_drop(live: LiveState) -> None:
    await live.put_consultation("c1", {"state": "active"})
    assert await live.put_participant("c1", "doctor", {"status": "connected", "ice": "checking"})
    await live.put_participant("c1", "doctor", {"ice": "connected", "stats": {"rtt_ms": 42}})
    await live.put_participant("c1", "guardian", {"status": "connected"})
    info = await live.consultation("c1")
    assert info is not None
    assert info["participants"] == {
        "doctor": {"status": "connected", "ice": "connected", "stats": {"rtt_ms": 42}},
        "guardian": {"status": "connected"},
    }
    await live.drop_participant("c1", "guardian")
    await live.drop_participant("c1", "nobody")
    info = await live.consultation("c1")
    assert info is not None
    assert list(info["participants"]) == ["doctor"]


async def test_live_consultations_lists_each_with_participants(live: LiveState) -> None:
    assert await live.live_consultations() == {}
    await live.put_consultation("c1", {"state": "active"})
    await live.put_consultation("c2", {})
    await live.put_participant("c1", "doctor", {"status": "connected"})
    assert await live.live_consultations() == {
        "c1": {"state": "active", "participants": {"doctor": {"status": "connected"}}},
        "c2": {"participants": {}},
    }


async def test_drop_consultation_removes_its_participants(live: LiveState) -> None:
    await live.put_consultation("c1", {"state": "active"})
    await live.put_participant("c1", "doctor", {"status": "connected"})
    await live.drop_consultation("c1")
    assert await live.consultation("c1") is None
    assert await live.live_consultations() == {}
    # A late update does not bring it back, and a new life starts empty.
    assert not await live.put_participant("c1", "doctor", {"stats": {"rtt_ms": 1}})
    assert await live.consultation("c1") is None
    await live.put_consultation("c1", {"state": "waiting"})
    assert await live.consultation("c1") == {"state": "waiting", "participants": {}}


async def test_values_come_back_as_json_copies(live: LiveState) -> None:
    await live.put_consultation("c1", {"tags": ("a", "b"), "empty": [], "big": 2**53 + 1})
    info = await live.consultation("c1")
    assert info == {"tags": ["a", "b"], "empty": [], "big": 2**53 + 1, "participants": {}}
    info["tags"].append("c")
    assert (await live.consultation("c1") or {})["tags"] == ["a", "b"]


async def test_reserved_key_and_bad_role_are_refused(live: LiveState) -> None:
    with pytest.raises(ValueError):
        await live.put_consultation("c1", {"participants": {}})
    await live.put_consultation("c1", {})
    with pytest.raises(ValueError):
        await live.put_participant("c1", "doctor:2", {})


# Fan-out


async def test_every_subscriber_gets_every_message_in_order(live: LiveState) -> None:
    first = await live.subscribe("ops")
    second = await live.subscribe("ops")
    sent = [{"n": i, "alert": "guardian_absent" if i % 3 == 0 else None} for i in range(50)]
    for message in sent:
        await live.publish("ops", message)
    for sub in (first, second):
        assert [await sub.get(timeout=5) for _ in sent] == sent
        await sub.aclose()


async def test_subscribers_get_only_their_channel(live: LiveState, live_peer: LiveState) -> None:
    async with await live.subscribe("consultation:c1") as sub:
        await live_peer.publish("consultation:c2", {"n": 1})
        await live_peer.publish("consultation:c1", {"n": 2})
        assert await sub.get(timeout=5) == {"n": 2}


async def test_get_times_out(live: LiveState) -> None:
    async with await live.subscribe("quiet") as sub:
        with pytest.raises(TimeoutError):
            await sub.get(timeout=0.05)


async def test_close_wakes_a_waiting_reader(live: LiveState) -> None:
    sub = await live.subscribe("ops")
    received: list[dict] = []

    async def read() -> None:
        async for message in sub:
            received.append(message)

    async def got_one() -> bool:
        return bool(received)

    reader = asyncio.create_task(read())
    await live.publish("ops", {"n": 1})
    await eventually(got_one)
    await sub.aclose()
    await asyncio.wait_for(reader, timeout=2)
    assert received == [{"n": 1}]
    with pytest.raises(SubscriptionClosed):
        await sub.get(timeout=1)
    await live.publish("ops", {"n": 2})  # nobody listening is fine
    await sub.aclose()  # closing twice is fine


async def test_closing_the_state_closes_its_subscriptions(live_backend: LiveState) -> None:
    await live_backend.start()
    sub = await live_backend.subscribe("ops")
    waiter = asyncio.create_task(sub.get())
    await asyncio.wait_for(live_backend.close(), timeout=5)
    with pytest.raises(SubscriptionClosed):
        await asyncio.wait_for(waiter, timeout=2)


# Nodes


async def test_heartbeat_expires(live: LiveState, live_peer: LiveState) -> None:
    await live.heartbeat("node-a", {"load": 0.2, "draining": False}, SHORT_TTL_S)
    await live_peer.heartbeat("node-b", {"load": 0.5, "draining": True}, 30)
    assert await live.nodes() == {
        "node-a": {"load": 0.2, "draining": False},
        "node-b": {"load": 0.5, "draining": True},
    }

    async def node_a_gone() -> bool:
        return "node-a" not in await live_peer.nodes()

    await eventually(node_a_gone)
    assert await live.nodes() == {"node-b": {"load": 0.5, "draining": True}}
    await live.heartbeat("node-a", {"load": 0.1}, 30)  # a node coming back is listed again
    assert set(await live.nodes()) == {"node-a", "node-b"}


# Choice of backend


def test_make_live_state_follows_redis_url() -> None:
    assert isinstance(make_live_state(None), MemoryLiveState)
    assert isinstance(make_live_state(""), MemoryLiveState)
    assert isinstance(make_live_state("redis://127.0.0.1:1/0"), RedisLiveState)


async def test_memory_ping() -> None:
    state = MemoryLiveState()
    await state.start()
    assert await state.ping()
    await state.close()


# Redis outages: errors come fast, and the client recovers on its own


@pytest.fixture
async def redis_live(redis_server: RedisServer) -> AsyncIterator[RedisLiveState]:
    state = RedisLiveState(redis_server.url)
    await state.start()
    try:
        yield state
    finally:
        await state.close()


async def test_ping_follows_the_server(redis_live: RedisLiveState, redis_server: RedisServer):
    assert await redis_live.ping()
    redis_server.stop()
    started = time.monotonic()
    assert await redis_live.ping() is False
    assert time.monotonic() - started < 3
    redis_server.start()
    assert await redis_live.ping()


async def test_calls_fail_fast_while_down(redis_live: RedisLiveState, redis_server: RedisServer):
    redis_server.stop()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: redis_live.claim("c1", "node-a", 30),
        lambda: redis_live.put_consultation("c1", {"state": "active"}),
        lambda: redis_live.live_consultations(),
        lambda: redis_live.publish("ops", {"n": 1}),
        lambda: redis_live.subscribe("ops"),
        lambda: redis_live.nodes(),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(LiveStateUnavailable):
            await call()
        assert time.monotonic() - started < 3
    redis_server.start()
    assert await redis_live.claim("c1", "node-a", 30) == "node-a"


async def test_subscription_survives_a_restart(
    redis_live: RedisLiveState, redis_server: RedisServer
) -> None:
    async with await redis_live.subscribe("ops") as sub:
        redis_server.stop()
        redis_server.start()
        n = 0

        async def delivered() -> bool:
            nonlocal n
            n += 1
            await redis_live.publish("ops", {"n": n})
            try:
                await sub.get(timeout=0.1)
            except TimeoutError:
                return False
            return True

        await eventually(delivered, timeout_s=10)
        await redis_live.publish("ops", {"after": True})
        while (message := await sub.get(timeout=5)) != {"after": True}:
            assert "n" in message


async def test_start_fails_when_redis_is_unreachable(redis_server: RedisServer) -> None:
    redis_server.stop()
    state = RedisLiveState(redis_server.url)
    with pytest.raises(LiveStateUnavailable):
        await state.start()
    assert await state.ping() is False
    await state.close()
