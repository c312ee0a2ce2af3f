"""Issue 17, findings 6 (WebSocket) and 7: each hostile frame seen on main gets a clear `error`
with its own code over a real socket of a real call, never `internal`; the sender's socket and
media stay up, the other participant stays connected, and the refusal is audited."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench.client import CallClient
from core.auth import Role
from signaling.handler import refusal_record
from signaling.protocol import ProtocolError
from tests.clinical_helpers import joined

from .node_fixtures import Node
from .offers import aiortc_offer, repeated_sections


@dataclass
class Call:
    node: Node
    cid: str
    doctor: CallClient  # sends the hostile frames
    guardian: CallClient  # the other participant

    async def refused(self, raw: str, code: str, field: str | None = None) -> dict[str, Any]:
        """Send `raw` as the doctor: one `error` with `code`, audited, and nothing else hurt."""
        before = await self.refusals()
        assert self.doctor.ws is not None
        await self.doctor.ws.send_str(raw)
        error = await self.doctor.expect("error", timeout=10)
        assert (error["code"], error.get("field")) == (code, field), error
        assert error["message"]
        await self.still_up()
        after = await self.refusals()
        assert len(after) == len(before) + 1 and after[-1]["data"]["code"] == code, after[-1:]
        return error

    async def still_up(self) -> None:
        """Both sockets answer, both participants are connected, media reaches both."""
        for side in (self.doctor, self.guardian):
            await side.send({"type": "ping", "id": "after"})
            assert (await side.expect("pong", timeout=5))["re"] == "after"
        room = self.node.rooms.get(self.cid)
        assert room is not None
        assert {str(r): p.status for r, p in room.participants.items()} == {
            "doctor": "connected", "guardian": "connected"}
        for side in (self.doctor, self.guardian):
            await side.wait_frames("video", 3, timeout=10)

    async def refusals(self) -> list[dict[str, Any]]:
        return [e for e in await self.node.events(self.cid) if e["kind"] == "signaling.refused"]


@pytest.fixture
async def call(node: Node, clips) -> AsyncIterator[Call]:  # type: ignore[no-untyped-def]
    """Both participants joined with media flowing both ways (state `verifying`)."""
    async with joined(node, clips) as (booking, guardian, doctor):
        for side in (guardian, doctor):
            await side.wait_frames("video", 3)
        yield Call(node, booking.consultation_id, doctor, guardian)


@pytest.fixture
async def task_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the loop reports: an exception no one retrieved (a failed background task)."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


def offer(sdp: str) -> str:
    return json.dumps({"type": "offer", "sdp": sdp})


async def test_json_nested_50000_deep_is_bad_json(call: Call) -> None:
    """Was RecursionError → `internal`."""
    error = await call.refused("[" * 50_000, "bad_json")
    assert "recursion" in error["message"]
    closed = '{"type": "ping", "id": ' + "[" * 30_000 + "]" * 30_000 + "}"  # 60 KB: under the cap
    await call.refused(closed, "bad_json")


async def test_lone_surrogate_is_refused_before_it_is_stored(call: Call) -> None:
    """Was an unaudited refusal for a `type` (the audit's hash could not encode the message
    that quoted it), and for a terminate's text the store's UnicodeEncodeError as the reply."""
    await call.refused('{"type": "\\ud800"}', "bad_json")
    terminate = {"type": "terminate", "reason": "other", "text": "TEXT",
                 "referral": {"hospital": "北京儿童医院", "department": "儿科",
                              "urgency": "routine"}}
    await call.refused(json.dumps(terminate).replace("TEXT", "\\ud800"), "bad_json")
    assert str(await call.node.ctx.lifecycle.state(call.cid)) == "verifying"


async def test_auditing_a_refusal_escapes_what_cannot_be_stored(call: Call) -> None:
    """Whatever a refusal quotes, its audit event is stored and the chain still verifies."""
    record = refusal_record(ProtocolError("bad_field", "'\ud800\x00' is not a field",
                                          "\udcff"))
    await call.node.ctx.events.append(call.cid, "signaling.refused", "doctor:x", record)
    assert record["message"] == "'\\ud800\\u0000' is not a field"
    assert (await call.node.ctx.events.verify(call.cid)).ok


async def test_garbage_ice_candidate_is_bad_field(call: Call) -> None:
    """Was AssertionError in aiortc → `internal`."""
    error = await call.refused(json.dumps({"type": "candidate", "candidate": {
        "candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0}}),
        "bad_field", "candidate")
    assert "ICE candidate" in error["message"]


async def test_offer_with_a_bogus_setup_is_bad_sdp(call: Call) -> None:
    """Was KeyError in aiortc → `internal`, after the sender's media had been torn down."""
    sdp = (await aiortc_offer()).replace("a=setup:actpass", "a=setup:bogus")
    error = await call.refused(offer(sdp), "bad_sdp", "sdp")
    assert "a=setup" in error["message"]


async def test_offer_cut_after_m_video_is_bad_sdp(call: Call) -> None:
    """Was AssertionError in aiortc → `internal`."""
    sdp = await aiortc_offer()
    error = await call.refused(offer(sdp[:sdp.index("m=video") + len("m=video")]), "bad_sdp",
                               "sdp")
    assert "m= line" in error["message"]


async def test_offer_without_fingerprint_is_bad_sdp(call: Call,
                                                   task_errors: list[dict[str, Any]]) -> None:
    """Was answered, then DTLS failed in a task whose exception no one retrieved."""
    sdp = "\r\n".join(line for line in (await aiortc_offer()).split("\r\n")
                      if not line.startswith("a=fingerprint"))
    error = await call.refused(offer(sdp), "bad_sdp", "sdp")
    assert "a=fingerprint" in error["message"]
    gc.collect()
    assert task_errors == []


@pytest.mark.parametrize("m_lines", [4, 100])
async def test_offer_with_other_m_lines_is_unsupported_media(call: Call, m_lines: int) -> None:
    """Were answered, though the protocol says exactly one audio and one video."""
    if m_lines == 4:  # aiortc's own offer for audio, video, audio, video
        sdp = await aiortc_offer("audio", "video", "audio", "video")
    else:
        sdp = repeated_sections(await aiortc_offer(), m_lines)
    error = await call.refused(offer(sdp), "unsupported_media", "sdp")
    assert f"has {m_lines}" in error["message"]


async def test_what_aiortc_refuses_past_the_checks_is_not_internal(
        call: Call, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last resort, with sdp_check switched off: aiortc's own KeyError and AssertionError
    are `bad_sdp` / `bad_field` too (signaling/peer.py, MediaRefused). The sender's media is
    gone then (its peer was replaced before aiortc failed); the other participant stays."""
    import signaling.handler

    monkeypatch.setattr(signaling.handler, "check_offer", lambda sdp: None)
    monkeypatch.setattr(signaling.handler, "check_candidate", lambda text: None)
    assert call.doctor.ws is not None
    sdp = (await aiortc_offer()).replace("a=setup:actpass", "a=setup:bogus")
    await call.doctor.ws.send_str(offer(sdp))
    error = await call.doctor.expect("error", timeout=10)
    assert error["code"] == "bad_sdp" and "KeyError" in error["message"], error
    await call.doctor.start_media()  # a good offer: a peer for the candidate to reach aiortc
    await call.doctor.send({"type": "candidate", "candidate": {
        "candidate": "candidate:garbage", "sdpMid": "0"}})
    error = await call.doctor.expect("error", timeout=10)
    assert error["code"] == "bad_field" and "AssertionError" in error["message"], error
    await call.doctor.wait_connected()
    room = call.node.rooms.get(call.cid)
    assert room is not None
    deadline = asyncio.get_running_loop().time() + 10
    while room.participants[Role.DOCTOR].status != "connected":  # media restored (reported)
        assert asyncio.get_running_loop().time() < deadline, "the doctor's media never came back"
        await asyncio.sleep(0.05)
    await call.still_up()
