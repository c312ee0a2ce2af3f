"""The pre-call connection test's messages (server/precall.py) as pydantic models, both ways.

Described once, as the call socket's are (signaling/client_messages.py, server_messages.py):
PROTOCOL.md's "Pre-call test: page → node" and "Pre-call test: node → page" tables are checked
against these in tests/test_protocol_doc.py, and a text frame is parsed by the call socket's
`signaling.protocol.validate`, so deep nesting, lone surrogates, non-JSON, an unknown `type` or a
bad field become the same `error` replies (`bad_json`, `unknown_type`, `bad_field`, `too_large`),
never an exception. Binary frames are the upload's bytes, not messages.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

MAX_PING_N = 1000  # `n` only tags a ping so the page can match its pong
MAX_TEXT_BYTES = 1024  # the largest text frame: the page's are under 40 bytes


class ProbeMessage(BaseModel):
    """Strict, like the call socket's messages; unknown fields are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class Ping(ProbeMessage):
    """One round trip; answered with `pong` carrying the same `n`."""

    type: Literal["ping"]
    n: Annotated[int, Field(ge=0, le=MAX_PING_N)] | None = None


class Download(ProbeMessage):
    """Start the download: the node sends random binary frames, then `downloaded`."""

    type: Literal["download"]


class Uploaded(ProbeMessage):
    """The page's binary frames are all sent: answered with `upload_result`, then closed."""

    type: Literal["uploaded"]


Message = Ping | Download | Uploaded
PROBE_MESSAGES: TypeAdapter[Message] = TypeAdapter(Annotated[Message, Field(discriminator="type")])


class ProbeReply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pong(ProbeReply):
    type: Literal["pong"]
    n: int | None


class Downloaded(ProbeReply):
    type: Literal["downloaded"]
    bytes: int
    seconds: float


class UploadResult(ProbeReply):
    type: Literal["upload_result"]
    bytes: int
    seconds: float


class Error(ProbeReply):
    type: Literal["error"]
    code: Literal["bad_json", "too_large", "unknown_type", "bad_field", "limit"]
    message: str
    field: str | None = None


Reply = Pong | Downloaded | UploadResult | Error
PROBE_REPLIES: TypeAdapter[Reply] = TypeAdapter(Annotated[Reply, Field(discriminator="type")])
