"""Every node → client signaling message as a pydantic model: what a page can rely on.

The node builds its messages as plain dicts, each kind by one constructor in signaling/protocol.py
(0.2-0.5 µs a message, against 4.5-7 µs to build and dump the model, measured here; and a dump
would reorder keys and drop `state`'s null `reason`, a field it always carries); these models
describe them once, so that PROTOCOL.md's "Node → client" table is checked against them
(tests/test_protocol_doc.py) and the tests can check that what a real node sends is what is
documented (`SERVER_MESSAGES.validate_python`). No undocumented field passes (`extra="forbid"`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .client_messages import QUALITY_LEVELS, QUALITY_LIMITATIONS


class ParticipantStatus(StrEnum):
    """A participant's place in the call: absent → connected ⇄ reconnecting → left."""

    ABSENT = "absent"  # not joined yet: so listed in `joined`, never a `participant` message
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # lost (socket or media), its place kept for the grace period
    LEFT = "left"


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerMessage(_Part):
    re: str | int | None = None  # the `id` of the client message this answers


class ConsultationInfo(_Part):
    id: str
    state: str


class You(_Part):
    role: Literal["doctor", "guardian"]
    subject: str


class ParticipantInfo(_Part):
    """One of `joined`'s participants: the one not there yet is `absent` (ParticipantStatus)."""

    role: Literal["doctor", "guardian"]
    status: Literal["absent", "connected", "reconnecting", "left"]
    ice: str | None = None


class ConsentInfo(_Part):
    given: bool
    version: str
    at: str | None


class Joined(ServerMessage):
    type: Literal["joined"]
    protocol: int
    consultation: ConsultationInfo
    you: You
    participants: list[ParticipantInfo]
    iceServers: list[dict[str, Any]]  # the browser's RTCConfiguration name
    rejoined: bool
    graceSeconds: float
    nodes: list[str]
    consent: ConsentInfo


class Answer(ServerMessage):
    type: Literal["answer"]
    sdp: str


class Participant(ServerMessage, ParticipantInfo):
    """The other side changed: it joined, was lost or left (never `absent` again)."""

    type: Literal["participant"]
    status: Literal["connected", "reconnecting", "left"]


class StateChange(ServerMessage):
    type: Literal["state"]
    state: str
    previous: str
    reason: str | None


class ConsentGiven(ServerMessage):
    type: Literal["consent"]
    given: Literal[True]
    version: str
    at: str


class Notice(ServerMessage):
    type: Literal["notice"]
    code: str
    zh: str
    en: str


class Error(ServerMessage):
    type: Literal["error"]
    code: str
    message: str
    field: str | None = None


class Redirect(ServerMessage):
    type: Literal["redirect"]
    url: str


class Pong(ServerMessage):
    type: Literal["pong"]


class QualityReport(ServerMessage):
    """The other participant's `quality` report, with whose it is and when the node took it."""

    type: Literal["quality"]
    role: Literal["doctor", "guardian"]
    level: Literal[QUALITY_LEVELS]  # type: ignore[valid-type]
    fps: float | None = None
    freezes: int | None = None
    freeze_s: float | None = None
    loss_percent: float | None = None
    rtt_ms: float | None = None
    concealed_percent: float | None = None
    kbps: float | None = None
    limitation: Literal[QUALITY_LIMITATIONS] | None = None  # type: ignore[valid-type]
    at: float


class Prescribed(ServerMessage):
    type: Literal["prescribed"]
    prescription: str
    items: int


class Presence(ServerMessage):
    type: Literal["presence"]
    guardian: Literal["present", "absent"]
    faces: int | None = None
    at: str | None = None
    zh: str
    en: str


class Verify(ServerMessage):
    """Doctor only: a step of identity verification (issue 3); the fields depend on the step."""

    type: Literal["verify"]
    step: Literal["waiting_video", "looking", "guidance", "challenge", "verified", "failed",
                  "locked"]
    zh: str
    en: str
    attempt: int | None = None
    max_attempts: int | None = None
    challenge: str | None = None
    index: int | None = None
    of: int | None = None
    seconds: float | None = None
    reason: str | None = None
    remaining: int | None = None
    distance: float | None = None
    failures: int | None = None


Message = Joined | Answer | Participant | StateChange | ConsentGiven | Notice | Error | \
    Redirect | Pong | QualityReport | Prescribed | Presence | Verify
SERVER_MESSAGES: TypeAdapter[Message] = TypeAdapter(
    Annotated[Message, Field(discriminator="type")])
