"""Ops: metrics, health and readiness, ending a call, and a Redis outage in the middle of a call."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from core.auth import Role
from recorder.service import RECORDER_KEY

from .clinical_helpers import give_consent
from .node_fixtures import Node, node_settings, start_node


async def _call(node: Node, clips):
    booking = await node.book()
    guardian = node.client(booking.guardian_link.split("#token=")[1], clips)
    doctor = node.client(booking.doctor_link.split("#token=")[1], clips)
    for side in (guardian, doctor):
        await side.connect()
        await side.start_media()
    await doctor.wait_connected()
    return booking.consultation_id, guardian, doctor


async def test_metrics_parse_and_carry_the_listed_metrics(node: Node, clips) -> None:
    _, guardian, doctor = await _call(node, clips)
    try:
        await guardian.ws.send_str("garbage")  # type: ignore[union-attr]
        await guardian.expect("error")
        async with node.session.get(node.url + "/metrics") as r:
            assert r.status == 401  # no token
        doctor_token = doctor.token
        async with node.session.get(node.url + "/metrics",
                                    headers={"Authorization": f"Bearer {doctor_token}"}) as r:
            assert r.status == 403
        ops = node.tokens.issue(Role.OPS, "prometheus")
        async with node.session.get(node.url + "/metrics",
                                    headers={"Authorization": f"Bearer {ops}"}) as r:
            assert r.status == 200
            text = await r.text()
    finally:
        await guardian.close()
        await doctor.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("tc_live_consultations", "tc_participants", "tc_join_latency_seconds",
                 "tc_verifications", "tc_recording_bytes", "tc_recording_errors",
                 "tc_event_loop_lag_seconds", "tc_node_cpu_percent",
                 "process_cpu_seconds", "tc_signaling_refused"):
        assert name in families, sorted(families)
    live = families["tc_live_consultations"].samples[0].value
    assert live >= 1
    connected = {s.labels["role"]: s.value for s in families["tc_participants"].samples}
    assert connected == {"doctor": 1, "guardian": 1}, connected
    joins = [s for s in families["tc_join_latency_seconds"].samples if s.name.endswith("_count")]
    assert joins[0].value >= 2  # both participants' media connected
    refused = {s.labels.get("code"): s.value for s in families["tc_signaling_refused"].samples
               if s.name.endswith("_total")}
    assert refused.get("bad_json", 0) >= 1


async def test_health_and_readiness(node: Node) -> None:
    async with node.session.get(node.url + "/healthz") as r:
        assert r.status == 200
    async with node.session.get(node.url + "/readyz") as r:
        body = await r.json()
        assert r.status == 200 and body == {
            "ready": True, "database": True, "live_state": True, "recording_store": {
                "backend": "local", "object_lock": False,
                "detail": f"local folder {node.settings.recordings_dir / 'store'}: no object "
                          "lock; retention and legal holds are enforced by the database and "
                          "the purge job only"},
            # One node, no TC_RECORDING_KEY: its own master key, and no warning (not shared).
            "recording_key": {"key_id": node.app[RECORDER_KEY].keys.current_id,
                              "source": "node"}}


async def test_ops_ends_a_call_and_others_are_refused(node: Node, clips) -> None:
    cid, guardian, doctor = await _call(node, clips)
    url = f"{node.url}/api/ops/consultations/{cid}/end"
    try:
        doctor_token = doctor.token
        async with node.session.post(url, json={"reason": "x"},
                                     headers={"Authorization": f"Bearer {doctor_token}"}) as r:
            assert r.status == 403
        ops = node.token(Role.OPS, "ops-7")
        headers = {"Authorization": f"Bearer {ops}"}
        async with node.session.post(url, json={}, headers=headers) as r:
            assert r.status == 422
        async with node.session.post(url, json={"reason": "network abuse reported"},
                                     headers=headers) as r:
            assert r.status == 200, await r.text()
        await guardian.expect("state", state="aborted")
        await doctor.expect("closed")
        async with node.session.post(url, json={"reason": "again"}, headers=headers) as r:
            assert r.status == 409
    finally:
        await guardian.close()
        await doctor.close()
    last = [e for e in await node.events(cid) if e["kind"] == "state"][-1]
    assert last["actor"] == "ops:ops-7" and "network abuse" in last["data"]["reason"]


async def test_redis_outage_mid_call(tmp_path, redis_server, clips) -> None:
    settings = node_settings(tmp_path, redis_url=redis_server.url, heartbeat_s=0.3,
                             node_ttl_s=2.0, stats_interval_s=0.3)
    async with start_node(settings) as node:
        cid, guardian, doctor = await _call(node, clips)
        try:
            await give_consent(guardian, doctor)
            await doctor.send({"type": "accept"})
            await guardian.expect("state", state="active")
            redis_server.stop()
            # The call goes on: media keeps flowing both ways, the sockets answer.
            await guardian.wait_frames("video", 60)
            await doctor.wait_frames("video", 60)
            await doctor.send({"type": "ping"})
            await doctor.expect("pong")
            async with node.session.get(node.url + "/readyz") as r:
                assert r.status == 503 and (await r.json())["live_state"] is False
            # Joining another consultation gets a clear error while the live state is away...
            other = await node.book()
            late = node.client(other.guardian_link.split("#token=")[1])
            try:
                await late.connect(timeout=10)
                raise AssertionError("a join succeeded while Redis was down")
            except ConnectionError as exc:
                assert "unavailable" in str(exc)
            finally:
                await late.close()
            # ...but a participant of the call hosted here gets its place back.
            await guardian.drop()
            await doctor.expect("participant", role="guardian", status="reconnecting")
            guardian = node.client(guardian.token, clips)
            assert (await guardian.connect())["rejoined"] is True
            await guardian.start_media()
            await doctor.expect("participant", role="guardian", status="connected")
            await guardian.wait_frames("video", 15)
            redis_server.start()
            deadline = time.monotonic() + 15
            while True:  # the node reconnects by itself
                async with node.session.get(node.url + "/readyz") as r:
                    if r.status == 200:
                        break
                assert time.monotonic() < deadline, "node did not recover after Redis returned"
                await asyncio.sleep(0.2)
            # Live state catches up: the consultation is there again, still hosted here.
            deadline = time.monotonic() + 10
            while (await node.ctx.live.owner(cid)) != node.settings.node_id or \
                    (await node.ctx.live.consultation(cid) or {}).get("state") != "active":
                assert time.monotonic() < deadline, "live state not restored after Redis returned"
                await asyncio.sleep(0.2)
            await doctor.send({"type": "end"})
            await guardian.expect("state", state="ended")
        finally:
            await guardian.close()
            await doctor.close()
