"""core/cluster.py as a unit: two `Cluster`s in this process over one real Redis (placement,
claims, a lost node noticed once, transitions passed on without echo). The whole-process view,
with real node processes and calls, is tests/test_cluster.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from core.alerts import ALERTS
from core.cluster import Cluster
from core.config import load_settings
from core.lifecycle import State, Transition
from core.live import RedisLiveState
from core.store import Database, EventLog

from .db_fixtures import make_consultation

WAIT_S = 5.0
WARM_UP = "warm-up"


@dataclass
class NodeUnderTest:
    cluster: Cluster
    live: RedisLiveState
    hosted: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def nodes(tmp: Path, redis_url: str, db: Database, *names: str
                ) -> AsyncIterator[dict[str, NodeUnderTest]]:
    made: dict[str, NodeUnderTest] = {}
    try:
        for name in names:
            settings = load_settings(data_dir=tmp / name, token_secret="t" * 40, node_id=name,
                                     public_url=f"http://{name}.test", heartbeat_s=0.2,
                                     node_ttl_s=0.6)
            live = RedisLiveState(redis_url)
            await live.start()
            hosted: list[str] = []
            cluster = Cluster(settings, live, EventLog(db), lambda h=hosted: h)
            made[name] = NodeUnderTest(cluster, live, hosted)
            await cluster.start()
        yield made
    finally:
        for node in made.values():
            await node.cluster.close()
            await node.live.close()


async def test_a_new_consultation_goes_to_the_least_loaded_node(
        tmp_path: Path, redis_server, database: Database) -> None:
    async with nodes(tmp_path, redis_server.url, database, "a", "b") as n:
        n["a"].hosted.extend(["c1", "c2"])
        await n["a"].cluster._beat()  # its load, now (the heartbeat would say it within 0.2 s)
        home = await n["a"].cluster.home("c3")
        assert (home.here, home.url) == (False, "http://b.test")
        assert (await n["b"].cluster.home("c3")).here  # b claims it
        # Once claimed, everyone is sent to the host, whatever the load.
        assert (await n["a"].cluster.home("c3")).url == "http://b.test"
        n["b"].cluster.draining = True
        await n["b"].cluster._beat()
        assert (await n["b"].cluster.home("c4")).url == "http://a.test"


async def test_a_tie_stays_here(tmp_path: Path, redis_server, database: Database) -> None:
    async with nodes(tmp_path, redis_server.url, database, "a", "b") as n:
        assert (await n["b"].cluster.home("c1")).here  # no redirect when it makes no difference


async def test_a_lost_node_is_noticed_once_and_ops_are_told(
        tmp_path: Path, redis_server, database: Database) -> None:
    cid = (await make_consultation(database)).id
    async with nodes(tmp_path, redis_server.url, database, "a", "b", "c") as n:
        alerts = await n["a"].live.subscribe(ALERTS)
        assert (await n["c"].cluster.home(cid)).here
        await n["c"].live.put_consultation(cid, {"node": "c"})
        await n["c"].cluster.close()  # c dies: no more heartbeats, its claim expires
        alert = await alerts.get(timeout=WAIT_S)
        assert alert["kind"] == "node.lost" and alert["consultation"] == cid
        assert alert["lost_node"] == "c" and "c" in alert["text"]
        for node in (n["a"], n["b"]):  # both detectors have another round, whatever the timing
            await node.cluster._mark_lost()
        events = [e for e in await EventLog(database).events(cid) if e.kind == "node.lost"]
        assert len(events) == 1, events  # a and b both saw it; one of them wrote it
        # A participant rejoining through a live node re-homes the consultation there.
        home = await n["b"].cluster.home(cid)
        assert home.here and home.previous_node == "c"
        await alerts.aclose()


async def test_transitions_reach_the_other_nodes_once(
        tmp_path: Path, redis_server, database: Database) -> None:
    async with nodes(tmp_path, redis_server.url, database, "a", "b") as n:
        heard: dict[str, asyncio.Queue[Transition]] = {}
        for name, node in n.items():
            queue: asyncio.Queue[Transition] = asyncio.Queue()
            heard[name] = queue

            async def listen(change: Transition, queue=queue) -> None:
                await queue.put(change)
            node.cluster.on_remote_transition.append(listen)
        for sender, receiver in (("a", "b"), ("b", "a")):  # both following (not acknowledged)
            await _until_heard(n[sender].cluster, heard[receiver])
        await n["a"].live.publish("transitions", {"origin": "x", "garbage": True})
        change = Transition("c1", State.ACTIVE, State.ENDED, "ops:o-1", "network abuse")
        await n["a"].cluster.publish_transition(change)
        got = await _next(heard["b"])
        assert (got.consultation_id, got.state, got.remote) == ("c1", State.ENDED, True)
        await n["b"].cluster.publish_transition(got)  # heard from elsewhere: not published again
        await n["a"].cluster.publish_transition(
            Transition("c2", State.ACTIVE, State.ENDED, "doctor:d", None))
        assert (await _next(heard["b"])).consultation_id == "c2"
        late = [heard["a"].get_nowait() for _ in range(heard["a"].qsize())]
        assert {c.consultation_id for c in late} <= {WARM_UP}  # a never hears its own, nor an echo


async def _until_heard(sender: Cluster, queue: asyncio.Queue[Transition]) -> None:
    """Publish a warm-up transition until the other node hears one (bounded)."""
    warm = Transition(WARM_UP, State.ACTIVE, State.ENDED, "system", None)
    async with asyncio.timeout(WAIT_S):
        while queue.empty():
            await sender.publish_transition(warm)
            await asyncio.sleep(0.05)


async def _next(queue: asyncio.Queue[Transition]) -> Transition:
    """The next transition that is not a warm-up (more of those may still be on their way)."""
    async with asyncio.timeout(WAIT_S):
        while (change := await queue.get()).consultation_id == WARM_UP:
            pass
    return change
