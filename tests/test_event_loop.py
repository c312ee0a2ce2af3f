"""The node's event loop choice (server/event_loop.py), and that the suite runs on it."""

from __future__ import annotations

import asyncio

import pytest

from core.config import EVENT_LOOPS, event_loop_setting, load_settings
from server.event_loop import new_event_loop


async def test_the_suite_runs_on_the_configured_loop() -> None:
    fresh = new_event_loop(event_loop_setting())
    fresh.close()
    assert type(asyncio.get_running_loop()) is type(fresh)


@pytest.mark.parametrize("name", EVENT_LOOPS)
def test_each_loop_runs_a_datagram_round_trip(name: str) -> None:
    async def round_trip() -> bytes:
        loop = asyncio.get_running_loop()
        got: asyncio.Future[bytes] = loop.create_future()

        class Echo(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:
                got.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        try:
            transport.sendto(b"\x80ping", transport.get_extra_info("sockname"))
            # the send budget reads this on every relay (signaling/passthrough.send_backlog)
            assert transport.get_write_buffer_size() >= 0
            return await asyncio.wait_for(got, 5)
        finally:
            transport.close()

    loop = new_event_loop(name)
    try:
        assert loop.run_until_complete(round_trip()) == b"\x80ping"
    finally:
        loop.close()
    assert name != "uvloop" or type(loop).__module__.startswith("uvloop")


def test_an_unknown_loop_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TC_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="TC_EVENT_LOOP"):
        load_settings(data_dir=tmp_path, token_secret="x" * 48)
