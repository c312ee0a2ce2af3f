"""Schemathesis against the served OpenAPI document: every operation, every role's token.

Properties: no 5xx, and every 4xx is a JSON error with a code (what a client can act on).
Examples are bounded and derandomised so the run is the same on every machine and fits CI.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from server.auth import Role, Tokens
from tests.node_process import NodeProcess, free_port

SECRET = "fuzz-secret-" + "y" * 40
CID = "c_fuzz"


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, dict]]:
    node = NodeProcess(Path(tmp_path_factory.mktemp("fuzz-node")), free_port(), SECRET)
    node.start()
    tokens = Tokens(SECRET, 3600)
    by_role = {role: tokens.issue(role, f"{role}-fuzz", CID if role in (Role.DOCTOR,
               Role.GUARDIAN) else None) for role in Role}
    try:
        yield node, by_role
    finally:
        node.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_node: tuple[NodeProcess, dict]) -> schemathesis.BaseSchema:
    node, by_role = fuzz_node
    request = urllib.request.Request(f"{node.url}/api/openapi.json",
                                     headers={"Authorization": f"Bearer {by_role[Role.ADMIN]}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        document = json.load(response)
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=node.url)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


def _json_error(response: schemathesis.Response) -> None:
    if 400 <= response.status_code < 500:
        body = json.loads(response.content)
        assert isinstance(body["error"]["code"], str) and body["error"]["code"], body


@schema.parametrize()
@settings(max_examples=12, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, fuzz_node: tuple[NodeProcess, dict]) -> None:
    node, by_role = fuzz_node
    for role in case.operation.definition.raw.get("x-roles") or [None]:
        token = by_role[Role(role)] if role else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = case.call(headers=headers, timeout=10)
        case.validate_response(response, checks=[not_a_server_error])
        _json_error(response)
    assert "Traceback" not in node.tail(200), node.tail(200)
