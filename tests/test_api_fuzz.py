"""Schemathesis against the OpenAPI document: every operation, with its roles' tokens.

Properties: no 5xx, every 4xx a JSON error with a code (what a client can act on), and no
traceback in the node's log. Cases are valid and invalid per the schema (schemathesis' positive
and negative modes), derandomised and bounded so the run is the same everywhere and fits CI.
The document is built from the app's declarations at collection (nothing starts for that); the
requests go to a real node process over HTTP.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from core.auth import BOUND_ROLES, Role, Tokens
from core.config import load_settings
from server import openapi
from server.app import create_app
from tests.node_process import NodeProcess, free_port

SECRET = "fuzz-secret-" + "y" * 40
CID = "c_fuzz"
EXAMPLES = 25  # per operation


def _operations() -> list[schemathesis.APIOperation]:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(load_settings(data_dir=Path(tmp), token_secret=SECRET))
        document = openapi.document(app)
    schema = schemathesis.openapi.from_dict(document)
    return [result.ok() for result in schema.get_all_operations()]


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = NodeProcess(Path(tmp_path_factory.mktemp("fuzz-node")), free_port(), SECRET)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def _token(role: str | None) -> dict[str, str]:
    if role is None:
        return {}
    cid = CID if Role(role) in BOUND_ROLES else None
    return {"Authorization": f"Bearer {Tokens(SECRET, 3600).issue(Role(role), 'fuzz', cid)}"}


def _strategy(operation: schemathesis.APIOperation) -> st.SearchStrategy:
    modes = [operation.as_strategy(GenerationMode.POSITIVE)]
    if operation.query or operation.body or operation.path_parameters:
        modes.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return st.one_of(modes)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_server_errors(operation: schemathesis.APIOperation, fuzz_node: NodeProcess) -> None:
    raw = operation.definition.raw
    logged = fuzz_node.log.stat().st_size
    roles = raw.get("x-roles") or [None]
    events = raw.get("x-events", False)

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=_strategy(operation), role=st.sampled_from(roles))
    def check(case: schemathesis.Case, role: str | None) -> None:
        if events:  # a stream answers at once and stays open: read its status, then leave
            kwargs = case.as_transport_kwargs(base_url=fuzz_node.url, headers=_token(role))
            with requests.request(**kwargs, stream=True, timeout=10) as streamed:
                assert streamed.status_code < 500, streamed.status_code
            return
        response = case.call(base_url=fuzz_node.url, headers=_token(role), timeout=10)
        case.validate_response(response, checks=[not_a_server_error])
        if 400 <= response.status_code < 500:
            body = json.loads(response.content)
            assert isinstance(body["error"]["code"], str) and body["error"]["code"], body

    check()
    with fuzz_node.log.open(errors="replace") as log:
        log.seek(logged)
        new = log.read()
    assert "Traceback" not in new, new[-4000:]
