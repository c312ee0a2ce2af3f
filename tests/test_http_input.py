"""Hostile HTTP input gets a clear 4xx JSON error and changes nothing (issue 17).

Each test names the finding it covers; each failed on main before the fix (a 500, a stored
full national ID, or a request held open without limit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.auth import Role
from core.store.models import Guardian, Patient
from tests.node_fixtures import Node, node_settings, start_node

DEEP = b"[" * 50_000 + b"]" * 50_000


@pytest.fixture
async def quick_node(tmp_path: Path) -> AsyncIterator[Node]:
    async with start_node(node_settings(tmp_path / "node", body_timeout_s=1.0)) as n:
        yield n


def _admin(node: Node) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token(Role.ADMIN, 'admin-1')}"}


async def _refused(node: Node, method: str, path: str, status: int, code: str,
                   **kwargs: object) -> dict:
    async with node.session.request(method, node.url + path, headers=_admin(node),
                                    timeout=10, **kwargs) as r:
        body = await r.json()
        assert (r.status, body["error"]["code"]) == (status, code), body
        return body


async def _count(node: Node, model: type) -> int:
    async with node.ctx.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)))


@pytest.mark.parametrize("path", ["/api/consultations", "/api/patients", "/api/guardians",
                                  "/api/prior-diagnoses", "/api/ops/consultations/c_1/end"])
async def test_json_nested_deep_is_bad_json(node: Node, path: str) -> None:
    await _refused(node, "POST", path, 400, "bad_json", data=DEEP)


async def test_lone_surrogate_is_refused_not_stored(node: Node) -> None:
    for raw in (b'{"name": "\\ud800x", "birth_date": "2020-01-01"}',
                b'{"name": "a\\u0000b", "birth_date": "2020-01-01"}'):  # a control character
        body = await _refused(node, "POST", "/api/patients", 422, "bad_field", data=raw)
        assert body["error"]["field"] == "name"
    assert await _count(node, Patient) == 0


@pytest.mark.parametrize("when", ["9999-12-31T10:00:00+08:00", "0001-01-01T00:00:00+00:00",
                                  "2026-13-01T00:00:00+08:00", "2026-06-01T10:00:00"])
async def test_scheduled_at_at_the_edges(node: Node, when: str) -> None:
    body = await _refused(node, "POST", "/api/consultations", 422, "bad_field", json={
        "hospital_id": "h_1", "specialty": "儿科", "doctor_id": "d_1", "patient_id": "p_1",
        "guardian_id": "g_1", "visit_type": "first", "scheduled_at": when})
    assert body["error"]["field"] == "scheduled_at"


@pytest.mark.parametrize("route", ["/api/patients", "/api/guardians"])
async def test_a_full_national_id_is_never_stored(node: Node, route: str) -> None:
    async with node.session.post(node.url + "/api/patients", headers=_admin(node), timeout=10,
                                 json={"name": "王小明", "birth_date": "2020-01-01"}) as r:
        patient_id = (await r.json())["id"]
    before = (await _count(node, Patient), await _count(node, Guardian))
    record = {"name": "王小明", "birth_date": "2020-01-01"} if route == "/api/patients" else {
        "name": "王大明", "relation": "父亲", "patient_id": patient_id}
    for full in ("110101202001011234", "11010120200101123X", "110101200001011**4"):
        body = await _refused(node, "POST", route, 422, "bad_field",
                              json={**record, "national_id_masked": full})
        assert body["error"]["field"] == "national_id_masked"
    assert (await _count(node, Patient), await _count(node, Guardian)) == before
    async with node.session.post(node.url + route, headers=_admin(node), timeout=10, json={
            **record, "national_id_masked": "110***********1234"}) as r:
        assert r.status == 201, await r.text()


async def test_a_body_that_never_comes_is_408(quick_node: Node) -> None:
    """Declared 1000 bytes, sent 10: the node answers within its limit, not never."""
    host, port = quick_node.server.host, quick_node.server.port
    reader, writer = await asyncio.open_connection(host, port)
    token = quick_node.token(Role.ADMIN, "admin-1")
    writer.write((f"POST /api/patients HTTP/1.1\r\nHost: {host}\r\n"
                  f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                  "Content-Length: 1000\r\n\r\n{\"name\": \"").encode())
    await writer.drain()
    started = time.monotonic()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    assert head.startswith(b"HTTP/1.1 408"), head
    assert time.monotonic() - started < 5
    writer.close()


async def test_aiohttp_refusals_are_json_too(node: Node) -> None:
    await _refused(node, "GET", "/api/no-such-route", 404, "not_found")
    await _refused(node, "DELETE", "/api/patients", 405, "method_not_allowed")
    await _refused(node, "POST", "/api/patients", 413, "request_entity_too_large",
                   data=b"{" + b" " * (2 * 1024 * 1024) + b"}")

