"""TURN credentials minted per participant (core/config/turn.py), checked by a real coturn.

The allocation tests use aioice's TURN client (the one aiortc uses) against a private turnserver
on 127.0.0.1: coturn accepting the minted credential is the proof that the HMAC is its scheme.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from pathlib import Path

import pytest
from aioice import stun, turn

from core.auth import Role
from core.config import load_settings
from core.config.turn import TurnConfig, mint

from .coturn import Coturn
from .node_fixtures import SECRET, node_settings, start_node
from .node_process import NodeProcess, free_port


def test_credential_is_the_turn_rest_scheme_and_expires_after_the_ttl() -> None:
    config = TurnConfig(urls=("turn:198.51.100.7:3478?transport=udp",), secret="s3cret",
                        ttl_s=600).checked()
    [server] = config.ice_servers("c1.guardian", now=1_700_000_000.9)
    assert server["urls"] == ["turn:198.51.100.7:3478?transport=udp"]
    assert server["username"] == "1700000600:c1.guardian"
    expected = hmac.new(b"s3cret", b"1700000600:c1.guardian", hashlib.sha1).digest()
    assert base64.b64decode(server["credential"]) == expected
    assert TurnConfig().ice_servers("c1.guardian", time.time()) == []


@pytest.mark.parametrize("env, message", [
    ({"TC_TURN_URLS": "turn:198.51.100.7:3478"}, "TC_TURN_SECRET is not"),
    ({"TC_TURN_URLS": "stun:198.51.100.7", "TC_TURN_SECRET": "x"}, "not a turn"),
    ({"TC_ICE_SERVERS": '[{"urls": "turn:198.51.100.7", "username": "u", "credential": "p"}]'},
     "only STUN servers"),
    ({"TC_ICE_SERVERS": '[{"urls": ["stun:198.51.100.7"], "credential": "p"}]'},
     "only STUN servers"),
])
def test_settings_refuse_static_turn_passwords_and_half_configured_turn(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        load_settings(data_dir=tmp_path, token_secret="t" * 40)


def test_settings_read_turn_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TC_TURN_URLS", "turn:198.51.100.7:3478?transport=udp, "
                       "turn:198.51.100.7:3478?transport=tcp")
    monkeypatch.setenv("TC_TURN_SECRET", "from-the-environment")
    monkeypatch.setenv("TC_ICE_SERVERS", '[{"urls": "stun:198.51.100.7:3478"}]')
    settings = load_settings(data_dir=tmp_path, token_secret="t" * 40)
    assert settings.turn.urls == ("turn:198.51.100.7:3478?transport=udp",
                                  "turn:198.51.100.7:3478?transport=tcp")
    assert settings.turn.ttl_s == 4 * 3600
    assert "from-the-environment" not in repr(settings)
    assert settings.ice_servers_json == [{"urls": "stun:198.51.100.7:3478"}]


async def test_joined_carries_fresh_credentials_for_each_participant(tmp_path: Path) -> None:
    config = TurnConfig(urls=("turn:127.0.0.1:3478?transport=udp",), secret="s", ttl_s=900)
    async with start_node(node_settings(tmp_path, turn=config)) as node:
        booking = await node.book()
        cid = booking.consultation_id
        guardian = node.client(node.token(Role.GUARDIAN, booking.guardian_id, cid))
        doctor = node.client(node.token(Role.DOCTOR, booking.doctor_id, cid))
        try:
            before = int(time.time())
            g_servers = (await guardian.connect())["iceServers"]
            d_servers = (await doctor.connect())["iceServers"]
        finally:
            await guardian.close()
            await doctor.close()
    [g], [d] = g_servers, d_servers
    expiry, user = g["username"].split(":", 1)
    assert user == f"{cid}.guardian" and d["username"].endswith(f":{cid}.doctor")
    assert before + 900 <= int(expiry) <= int(time.time()) + 900
    assert g["credential"] == mint("s", user, int(expiry))[1] != d["credential"]


class _Sink(asyncio.DatagramProtocol):
    pass


async def _allocate(server: Coturn, username: str, password: str, transport: str) -> str:
    """Ask coturn for a relay address with these credentials; return it or raise."""
    relay, _ = await turn.create_turn_endpoint(
        _Sink, (server.ip, server.port), username, password, transport=transport)
    try:
        host, port = relay.get_extra_info("sockname")
        return f"{host}:{port}"
    finally:
        relay.close()


@pytest.fixture
def coturn(tmp_path: Path):
    with Coturn(tmp_path / "coturn") as server:
        yield server


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_coturn_allocates_a_relay_with_a_minted_credential(
        coturn: Coturn, transport: str) -> None:
    config = TurnConfig(urls=coturn.urls(transport), secret=coturn.secret, ttl_s=60)
    [server] = config.ice_servers("c1.guardian", time.time())
    relay = await asyncio.wait_for(
        _allocate(coturn, server["username"], server["credential"], transport), 10)
    assert relay.startswith("127.0.0.1:"), relay


@pytest.mark.parametrize("case", ["expired", "wrong_secret"])
async def test_coturn_refuses_an_expired_or_foreign_credential(coturn: Coturn, case: str) -> None:
    now = int(time.time())
    secret, expires_at = (coturn.secret, now - 5) if case == "expired" else ("not-it", now + 60)
    username, credential = mint(secret, "c1.guardian", expires_at)
    with pytest.raises(stun.TransactionFailed) as refused:
        await asyncio.wait_for(_allocate(coturn, username, credential, "udp"), 10)
    assert refused.value.response.attributes["ERROR-CODE"][0] == 401


def test_node_without_the_turn_secret_does_not_start(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", free_port(), SECRET,
                       TC_TURN_URLS="turn:127.0.0.1:3478?transport=udp")
    try:
        with pytest.raises(RuntimeError, match="bad configuration: TC_TURN_URLS is set but "
                           "TC_TURN_SECRET is not") as refused:
            node.start(timeout=30)
    finally:
        node.stop()
    assert "node exited with 2" in str(refused.value)
