"""Signaling protocol v1 (see PROTOCOL.md): parse what clients send, build what the node sends.

Every message is checked here before anything acts on it, so the handlers only ever see the
models of signaling/client_messages.py and a bad message becomes one clear `error` reply, never
an exception that closes the socket. Parsing is pydantic's JSON parser over the union of those
models: it refuses lone surrogates and nesting deeper than its limit (200) as invalid JSON.
`validate` does the same for another socket's messages (the pre-call probe, server/precall.py).

Each node → client message is built by one constructor below (or, for the three that identity and
the recorder send as well, in core/calls.py, re-exported here), the only place that writes its
`type` and field names; signaling/server_messages.py describes the same messages as models
(checked against PROTOCOL.md, and against these constructors in tests/test_protocol.py). They
return plain dicts, in the key order the pages have always received.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

# What identity and the recorder send too is built in the base layer, beside the call they send
# it through (core/calls.py); the node's own messages are built below.
from core.calls import Out, notice, presence, verify

from .client_messages import (
    DOCTOR_REASONS,
    MAX_PRESCRIPTION_ITEMS,
    MAX_SDP_BYTES,
    MESSAGES,
    PROTOCOL_VERSION,
    QUALITY_LEVELS,
    QUALITY_LIMITATIONS,
    URGENCIES,
    Accept,
    Candidate,
    ClientMessage,
    Consent,
    End,
    IceCandidate,
    Join,
    Leave,
    MessageId,
    Offer,
    Ping,
    Prescribe,
    Quality,
    Terminate,
)
from .server_messages import ParticipantStatus

__all__ = [
    "DOCTOR_REASONS", "MAX_PRESCRIPTION_ITEMS", "MAX_SDP_BYTES", "PROTOCOL_VERSION",
    "QUALITY_LEVELS", "QUALITY_LIMITATIONS", "URGENCIES", "Accept", "Candidate", "Consent",
    "End", "IceCandidate", "Join", "Leave", "Message", "Offer", "ParticipantStatus", "Ping",
    "Prescribe", "ProtocolError", "Quality", "Terminate", "answer", "consent", "error", "joined",
    "notice", "parse", "participant", "participant_info", "pong", "prescribed", "presence",
    "quality", "redirect", "state", "validate", "verify",
]

Message = ClientMessage
T = TypeVar("T")


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, field: str | None = None, ref: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.ref = ref

    def to_message(self) -> dict[str, Any]:
        return error(self.code, self.message, self.field, self.ref)


class _Envelope(BaseModel):
    """Just the `id` of a message that failed validation, for the error's `re`."""

    model_config = ConfigDict(strict=True, extra="ignore")
    id: MessageId | None = None


def parse(raw: str | bytes, max_bytes: int) -> ClientMessage:
    """One client frame → one message, or a ProtocolError saying exactly what is wrong."""
    return validate(MESSAGES, raw, max_bytes)


def validate(messages: TypeAdapter[T], raw: str | bytes, max_bytes: int,
             refs: bool = True) -> T:
    """One frame → one of `messages` (a union tagged by `type`), or a ProtocolError; `refs`:
    a refusal carries the message's `id` as `re` (the call socket's messages have one)."""
    if len(raw) > max_bytes:
        raise ProtocolError("too_large", f"message is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        return messages.validate_json(raw)
    except ValidationError as exc:
        raise _refusal(exc.errors(include_url=False, include_input=False),
                       raw if refs else None) from None


def _refusal(errors: list[ErrorDetails], raw: str | bytes | None) -> ProtocolError:
    first = errors[0]
    kind = first["type"]
    if kind == "json_invalid":
        return ProtocolError("bad_json", f"not valid JSON: {(first.get('ctx') or {}).get('error')}")
    if kind in ("dict_type", "model_type", "model_attributes_type") and not first["loc"]:
        return ProtocolError("bad_json", "a message must be a JSON object")
    # The model's name heads each location (the union's tag): the field's path follows it.
    bad_id = [e for e in errors if e["loc"][1:2] == ("id",)]
    if bad_id:
        return ProtocolError("bad_field", f"'id' {bad_id[0]['msg']}", "id")
    ref = _ref(raw) if raw is not None else None
    if kind == "union_tag_not_found":
        return ProtocolError("unknown_type", "'type' is missing", "type", ref)
    if kind == "union_tag_invalid":
        tag = str((first.get("ctx") or {}).get("tag", ""))
        return ProtocolError("unknown_type", f"unknown message type '{tag[:40]}'", "type", ref)
    name = _path(first["loc"][1:])
    return ProtocolError("bad_field", f"'{name}': {_lower(first['msg'])}", name, ref)


def _ref(raw: str | bytes) -> str | int | None:
    try:
        return _Envelope.model_validate_json(raw).id
    except ValidationError:
        return None


def _path(loc: tuple[int | str, ...]) -> str:
    """('referral', 'hospital') → referral.hospital; ('items', 0, 'drug') → items[0].drug."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "type"


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


# -- node → client ---------------------------------------------------------------------------

def error(code: str, message: str, field: str | None = None, re: Any = None) -> Out:
    msg: Out = {"type": "error", "code": code, "message": message}
    if field:
        msg["field"] = field
    if re is not None:
        msg["re"] = re
    return msg


def pong() -> Out:
    return {"type": "pong"}


def answer(sdp: str) -> Out:
    return {"type": "answer", "sdp": sdp}


def redirect(url: str, re: Any) -> Out:
    """Always with `re` (null for a `join` without an id), as the pages have always had it."""
    return {"type": "redirect", "url": url, "re": re}


def participant_info(role: str, status: ParticipantStatus, ice: str) -> Out:
    """A participant as `joined` lists it, the `participant` message carries it and the live
    state keeps it (plain strings: the live state stores JSON)."""
    return {"role": str(role), "status": str(status), "ice": ice}


def participant(role: str, status: ParticipantStatus, ice: str) -> Out:
    return {"type": "participant", **participant_info(role, status, ice)}


def joined(*, protocol: int, consultation: Mapping[str, Any], you: Mapping[str, Any],
           participants: list[Out], ice_servers: list[dict[str, Any]], rejoined: bool,
           grace_seconds: float, nodes: list[str], consent: Mapping[str, Any]) -> Out:
    return {"type": "joined", "protocol": protocol, "consultation": consultation, "you": you,
            "participants": participants, "iceServers": ice_servers, "rejoined": rejoined,
            "graceSeconds": grace_seconds, "nodes": nodes, "consent": consent}


def state(state: str, previous: str, reason: str | None) -> Out:
    """A lifecycle transition; `reason` is sent as null when there is none."""
    return {"type": "state", "state": str(state), "previous": str(previous), "reason": reason}


def consent(version: str, at: str) -> Out:
    return {"type": "consent", "given": True, "version": version, "at": at}


def quality(role: str, delivered: Mapping[str, Any]) -> Out:
    """The other participant's report: `level`, its figures and `at`, as the node took them."""
    return {"type": "quality", "role": str(role), **delivered}


def prescribed(prescription: str, items: int) -> Out:
    return {"type": "prescribed", "prescription": prescription, "items": items}
