"""Every route in the OpenAPI document, called with every role's token and with bad tokens.

The document is generated from the same declarations that enforce access (core/endpoint.py),
so this walks what the node really serves: a route added without a declaration fails here.
"""

from __future__ import annotations

import re
import time

import jwt
import pytest

from core.auth import ALGORITHM, BOUND_ROLES, ISSUER, Role
from server import openapi
from tests.node_fixtures import SECRET, Node

CID = "c_matrix"
# Tokens that must never pass: expired, signed with another key, not a token, another algorithm.
BAD_TOKENS = {
    "expired": lambda: jwt.encode({"iss": ISSUER, "sub": "a", "role": "admin",
                                   "exp": int(time.time()) - 10}, SECRET, algorithm=ALGORITHM),
    "other_key": lambda: jwt.encode({"iss": ISSUER, "sub": "a", "role": "admin",
                                     "exp": int(time.time()) + 60}, "k" * 40,
                                    algorithm=ALGORITHM),
    "garbage": lambda: "not.a.token",
    "none_alg": lambda: jwt.encode({"iss": ISSUER, "sub": "a", "role": "admin",
                                    "exp": int(time.time()) + 60}, None, algorithm="none"),
    "unknown_role": lambda: jwt.encode({"iss": ISSUER, "sub": "a", "role": "root",
                                        "exp": int(time.time()) + 60}, SECRET,
                                       algorithm=ALGORITHM),
}


def _operations(node: Node) -> list[tuple[str, str, dict]]:
    doc = openapi.document(node.app)
    return [(method.upper(), path, op) for path, ops in doc["paths"].items()
            for method, op in ops.items()]


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: CID if m.group(1) == "cid" else "x_1", path)


async def _call(node: Node, method: str, path: str, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with node.session.request(method, node.url + _url(path), headers=headers,
                                    json={} if method in ("POST", "PUT", "PATCH") else None,
                                    timeout=10) as r:
        body = await r.json() if r.content_type == "application/json" else {}
        return r.status, body


async def test_every_route_is_in_the_document(node: Node) -> None:
    ops = _operations(node)
    routes = {(r.method, r.resource.canonical) for r in node.app.router.routes()
              if r.method != "HEAD" and r.resource is not None
              and not openapi.UNDESCRIBED.match(r.resource.canonical)}
    assert {(m, p) for m, p, _ in ops} == routes
    assert len(ops) >= 40


async def test_each_role_gets_exactly_its_rights(node: Node) -> None:
    checked = 0
    for method, path, op in _operations(node):
        if op["x-auth"] != "bearer":
            continue
        allowed = set(op["x-roles"])
        for role in Role:
            token = node.token(role, f"{role}-1", CID if role in BOUND_ROLES else None)
            status, body = await _call(node, method, path, token)
            where = f"{method} {path} as {role}"
            if role in allowed:
                assert status not in (401, 403) or body["error"]["code"] not in (
                    "wrong_role", "no_token", "bad_token"), where
            else:
                assert (status, body["error"]["code"]) == (403, "wrong_role"), where
            checked += 1
        for name, make in BAD_TOKENS.items():
            status, body = await _call(node, method, path, make())
            assert (status, body["error"]["code"]) == (401, "bad_token"), f"{method} {path} {name}"
        status, body = await _call(node, method, path, None)
        assert (status, body["error"]["code"]) == (401, "no_token"), f"{method} {path}"
    assert checked >= 35 * len(Role)


@pytest.mark.parametrize("role", sorted(BOUND_ROLES))
async def test_bound_roles_stay_in_their_consultation(node: Node, role: Role) -> None:
    token = node.token(role, "p-1", "c_other")
    for method, path, op in _operations(node):
        if "{cid}" in path and role in op["x-roles"]:
            status, body = await _call(node, method, path, token)
            assert (status, body["error"]["code"]) == (403, "wrong_consultation"), path


async def _call_query(node: Node, path: str, token: str) -> tuple[int, dict]:
    """GET with the token as `?token=` (EventSource and WebSocket cannot set a header)."""
    async with node.session.get(node.url + _url(path), params={"token": token},
                                timeout=10) as r:
        body = await r.json() if r.content_type == "application/json" else {}
        return r.status, body


def _own_token(node: Node, role: Role, ttl: int | None = None) -> str:
    return node.token(role, f"{role}-1", CID if role in BOUND_ROLES else None,
                      ttl)


async def test_a_token_in_the_query_is_checked_as_in_the_header(node: Node) -> None:
    """The routes that take `?token=` (the event streams): bad, expired and other roles' tokens
    are refused there as in the header; the other routes ignore a token in the query."""
    query_routes = 0
    for method, path, op in _operations(node):
        if op["x-auth"] != "bearer":
            continue
        allowed = set(op["x-roles"])
        if not any(p["name"] == "token" and p["in"] == "query" for p in op.get("parameters", [])):
            if method == "GET":  # a token in a URL ends up in logs: only where it must
                status, body = await _call_query(node, path, _own_token(node, min(allowed)))
                assert (status, body["error"]["code"]) == (401, "no_token"), path
            continue
        query_routes += 1
        for role in Role:
            status, body = await _call_query(node, path, _own_token(node, role))
            where = f"{path} ?token= of {role}"
            if role in allowed:
                assert status not in (401, 403), (where, status, body)
                status, body = await _call_query(node, path, _own_token(node, role, ttl=-10))
                assert (status, body["error"]["code"]) == (401, "bad_token"), f"{where}, expired"
                assert "expired" in body["error"]["message"], body
            else:
                assert (status, body["error"]["code"]) == (403, "wrong_role"), where
        for name, make in BAD_TOKENS.items():
            status, body = await _call_query(node, path, make())
            assert (status, body["error"]["code"]) == (401, "bad_token"), f"{path} {name}"
        status, body = await _call_query(node, path, "")
        assert (status, body["error"]["code"]) == (401, "no_token"), path
    assert query_routes == 2  # /api/ops/stream, /api/worklist/stream


@pytest.mark.parametrize("path", ["/ws", "/api/precall/probe"])
async def test_websockets_refuse_bad_query_tokens_before_the_upgrade(node: Node,
                                                                     path: str) -> None:
    """The two WebSockets (not in the document): the same refusals, as JSON, before upgrading."""
    for name, make in {**BAD_TOKENS, "expired_doctor": lambda: _own_token(
            node, Role.DOCTOR, ttl=-10)}.items():
        status, body = await _call_query(node, path, make())
        assert (status, body["error"]["code"]) == (401, "bad_token"), f"{path} {name}"
    for role in set(Role) - {Role.DOCTOR, Role.GUARDIAN}:
        status, body = await _call_query(node, path, _own_token(node, role))
        assert (status, body["error"]["code"]) == (403, "wrong_role"), f"{path} {role}"
    status, body = await _call_query(node, path, "")
    assert (status, body["error"]["code"]) == (401, "no_token"), path
