"""signaling/protocol.py's node → client constructors: the very JSON the node always sent, and
each one a message that signaling/server_messages.py (so PROTOCOL.md) documents.

The expected texts are the dicts the send sites wrote inline before the constructors (same keys,
same order): the browser pages and the tests read them as they are.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest

from core.auth import Role
from core.lifecycle import State
from signaling import protocol
from signaling.protocol import ParticipantStatus
from signaling.server_messages import SERVER_MESSAGES, Participant, ParticipantInfo

CONNECTED = ParticipantStatus.CONNECTED

# (built by the constructor, the dict the send site wrote before it)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "pong": (protocol.pong(), {"type": "pong"}),
    "answer": (protocol.answer("v=0\r\n"), {"type": "answer", "sdp": "v=0\r\n"}),
    "redirect": (protocol.redirect("https://n2:8443", "j1"),
                 {"type": "redirect", "url": "https://n2:8443", "re": "j1"}),
    "redirect without an id": (protocol.redirect("https://n2:8443", None),
                               {"type": "redirect", "url": "https://n2:8443", "re": None}),
    "participant": (protocol.participant(Role.GUARDIAN, ParticipantStatus.RECONNECTING, "failed"),
                    {"type": "participant", "role": "guardian", "status": "reconnecting",
                     "ice": "failed"}),
    "state": (protocol.state(State.TERMINATED, State.ACTIVE, "condition_changed"),
              {"type": "state", "state": "terminated", "previous": "active",
               "reason": "condition_changed"}),
    "state without a reason": (protocol.state(State.VERIFYING, State.WAITING, None),
                               {"type": "state", "state": "verifying", "previous": "waiting",
                                "reason": None}),
    "consent": (protocol.consent("2026.1", "2026-03-01T08:00:00+00:00"),
                {"type": "consent", "given": True, "version": "2026.1",
                 "at": "2026-03-01T08:00:00+00:00"}),
    "notice": (protocol.notice("ice_failed", "网络连接中断，正在重新连接",
                               "Media connection lost, reconnecting"),
               {"type": "notice", "code": "ice_failed", "zh": "网络连接中断，正在重新连接",
                "en": "Media connection lost, reconnecting"}),
    "error": (protocol.error("replaced", "this participant joined from another connection"),
              {"type": "error", "code": "replaced",
               "message": "this participant joined from another connection"}),
    "error with field and re": (
        protocol.ProtocolError("bad_field", "'sdp': too long", "sdp", 7).to_message(),
        {"type": "error", "code": "bad_field", "message": "'sdp': too long", "field": "sdp",
         "re": 7}),
    "quality": (protocol.quality(Role.DOCTOR, {"level": "poor", "fps": 9.5, "at": 1.5e9}),
                {"type": "quality", "role": "doctor", "level": "poor", "fps": 9.5,
                 "at": 1.5e9}),
    "prescribed": (protocol.prescribed("rx_1", 2),
                   {"type": "prescribed", "prescription": "rx_1", "items": 2}),
    "presence change": (protocol.presence("absent", "请回来", "come back", 0,
                                          "2026-03-01T08:00:00+00:00"),
                        {"type": "presence", "guardian": "absent", "faces": 0,
                         "at": "2026-03-01T08:00:00+00:00", "zh": "请回来", "en": "come back"}),
    "presence on a rejoin": (protocol.presence("present", "在", "here"),
                             {"type": "presence", "guardian": "present", "zh": "在",
                              "en": "here"}),
    "verify": (protocol.verify("challenge", "向左转", "Turn left", challenge="left", index=1,
                               of=3, seconds=6.0),
               {"type": "verify", "step": "challenge", "zh": "向左转", "en": "Turn left",
                "challenge": "left", "index": 1, "of": 3, "seconds": 6.0}),
    "joined": (
        protocol.joined(protocol=1, consultation={"id": "c1", "state": "waiting"},
                        you={"role": "guardian", "subject": "g1"},
                        participants=[protocol.participant_info(Role.DOCTOR,
                                                                ParticipantStatus.ABSENT, "new"),
                                      protocol.participant_info(Role.GUARDIAN, CONNECTED,
                                                                "new")],
                        ice_servers=[], rejoined=False, grace_seconds=30.0, nodes=[],
                        consent={"given": False, "version": "2026.1", "at": None}),
        {"type": "joined", "protocol": 1, "consultation": {"id": "c1", "state": "waiting"},
         "you": {"role": "guardian", "subject": "g1"},
         "participants": [{"role": "doctor", "status": "absent", "ice": "new"},
                          {"role": "guardian", "status": "connected", "ice": "new"}],
         "iceServers": [], "rejoined": False, "graceSeconds": 30.0, "nodes": [],
         "consent": {"given": False, "version": "2026.1", "at": None}}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_wire_format_is_what_the_pages_always_read(case: str) -> None:
    built, before = CASES[case]
    assert json.dumps(built) == json.dumps(before)  # keys, order, values, the bytes sent
    assert all(type(v) in (str, int, float, bool, type(None), list, dict)
               for v in built.values())  # no enum member leaks into a stored dict


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_constructed_message_is_documented(case: str) -> None:
    SERVER_MESSAGES.validate_python(CASES[case][0])


def test_a_participant_message_never_says_absent() -> None:
    message = protocol.participant(Role.DOCTOR, ParticipantStatus.ABSENT, "new")
    with pytest.raises(ValueError, match="status"):
        SERVER_MESSAGES.validate_python(message)


def test_the_documented_statuses_are_the_enum() -> None:
    listed = typing.get_args(ParticipantInfo.model_fields["status"].annotation)
    assert set(listed) == set(ParticipantStatus)
    sent = typing.get_args(Participant.model_fields["status"].annotation)
    assert set(sent) == set(ParticipantStatus) - {ParticipantStatus.ABSENT}
