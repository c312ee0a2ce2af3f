"""Signaling protocol v1 (see PROTOCOL.md): parse and validate what clients send.

Every message is checked here before anything acts on it, so the handlers only ever see
well-formed dataclasses and a bad message becomes one clear `error` reply, never an exception
that closes the socket.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
# What the doctor may give as a termination reason, and the referral urgencies (issue 6).
TERMINATE_REASONS = ("condition_changed", "needs_in_person", "first_visit_outside_pilot",
                     "guardian_absent", "technical_failure", "other")
URGENCIES = ("routine", "urgent", "emergency")
MAX_SDP_BYTES = 64 * 1024


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, field: str | None = None, ref: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.ref = ref

    def to_message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.field:
            msg["field"] = self.field
        if self.ref is not None:
            msg["re"] = self.ref
        return msg


@dataclass(frozen=True)
class Message:
    type: ClassVar[str]
    id: str | int | None


@dataclass(frozen=True)
class Join(Message):
    type: ClassVar[str] = "join"
    protocol: int


@dataclass(frozen=True)
class Offer(Message):
    type: ClassVar[str] = "offer"
    sdp: str


@dataclass(frozen=True)
class IceCandidate:
    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True)
class Candidate(Message):
    type: ClassVar[str] = "candidate"
    candidate: IceCandidate | None


@dataclass(frozen=True)
class Accept(Message):
    type: ClassVar[str] = "accept"


@dataclass(frozen=True)
class End(Message):
    type: ClassVar[str] = "end"
    reason: str


@dataclass(frozen=True)
class Consent(Message):
    """The guardian accepts the informed-consent text of `version` (issue 6)."""

    type: ClassVar[str] = "consent"
    version: str


@dataclass(frozen=True)
class Terminate(Message):
    """The doctor ends the consultation at once and refers the patient (issue 6)."""

    type: ClassVar[str] = "terminate"
    reason: str
    text: str | None
    hospital: str
    department: str
    urgency: str
    note: str


@dataclass(frozen=True)
class Prescribe(Message):
    """The doctor issues a prescription (issue 4: refused for a child under 6 unless the guardian
    and the doctor are present)."""

    type: ClassVar[str] = "prescribe"
    items: tuple[dict[str, str], ...]


MAX_PRESCRIPTION_ITEMS = 20
PRESCRIPTION_FIELDS = {"drug": 200, "dose": 100, "route": 50, "frequency": 100, "days": 10,
                       "note": 500}


def _prescribe(obj: dict[str, Any], ref: Any) -> Prescribe:  # issue 4
    items = _field(obj, "items", list, ref)
    if not 0 < len(items) <= MAX_PRESCRIPTION_ITEMS:
        raise ProtocolError("bad_field", f"'items' must hold 1-{MAX_PRESCRIPTION_ITEMS} items",
                            "items", ref)
    parsed = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ProtocolError("bad_field", f"'items[{i}]' must be an object", "items", ref)
        unknown = set(item) - set(PRESCRIPTION_FIELDS)
        if unknown:
            raise ProtocolError("bad_field", f"'items[{i}]' has unknown fields: "
                                + ", ".join(sorted(unknown)[:5]), "items", ref)
        parsed.append({k: v for k in PRESCRIPTION_FIELDS if (v := _text(
            item, k, ref, PRESCRIPTION_FIELDS[k], f"items[{i}].",
            required=k in ("drug", "dose"))) is not None})
    return Prescribe(ref, tuple(parsed))


@dataclass(frozen=True)
class Quality(Message):
    """What the page itself receives, from its own getStats (issue 11): the node passes it to the
    other participant (its "the doctor's connection is weak") and keeps it for ops."""

    type: ClassVar[str] = "quality"
    level: str
    figures: dict[str, float | int | str]


QUALITY_LEVELS = ("good", "fair", "poor")
QUALITY_LIMITATIONS = ("none", "bandwidth", "cpu", "other")
# Field → (kind, largest value). All optional; a present one must be a finite number in range.
QUALITY_FIGURES: dict[str, tuple[type, float]] = {
    "fps": (float, 240), "freezes": (int, 1_000_000), "freeze_s": (float, 86_400),
    "loss_percent": (float, 100), "rtt_ms": (float, 600_000), "concealed_percent": (float, 100),
    "kbps": (float, 1_000_000),
}


def _quality(obj: dict[str, Any], ref: Any) -> Quality:
    level = _field(obj, "level", str, ref)
    if level not in QUALITY_LEVELS:
        raise ProtocolError("bad_field", "'level' must be one of " + ", ".join(QUALITY_LEVELS),
                            "level", ref)
    figures: dict[str, float | int | str] = {}
    for name, (kind, largest) in QUALITY_FIGURES.items():
        value = _field(obj, name, (int, float), ref, required=False)
        if value is None:
            continue
        if not math.isfinite(value) or not 0 <= value <= largest or (
                kind is int and value != int(value)):
            raise ProtocolError("bad_field", f"'{name}' must be a {kind.__name__} in "
                                f"0..{largest:g}", name, ref)
        figures[name] = int(value) if kind is int else round(float(value), 1)
    limitation = _field(obj, "limitation", str, ref, required=False)
    if limitation is not None:
        if limitation not in QUALITY_LIMITATIONS:
            raise ProtocolError("bad_field", "'limitation' must be one of "
                                + ", ".join(QUALITY_LIMITATIONS), "limitation", ref)
        figures["limitation"] = limitation
    return Quality(ref, level, figures)


@dataclass(frozen=True)
class Leave(Message):
    type: ClassVar[str] = "leave"


@dataclass(frozen=True)
class Ping(Message):
    type: ClassVar[str] = "ping"


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], ref: Any,
           required: bool = True) -> Any:
    if name not in obj or obj[name] is None:
        if required:
            raise ProtocolError("bad_field", f"'{name}' is required", name, ref)
        return None
    value = obj[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ProtocolError("bad_field", f"'{name}' must be {names}", name, ref)
    return value


def _candidate(obj: dict[str, Any], ref: Any) -> IceCandidate | None:
    raw = obj.get("candidate")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ProtocolError("bad_field", "'candidate' must be an object or null", "candidate", ref)
    text = _field(raw, "candidate", str, ref)
    if text == "":
        return None  # the browser's end-of-candidates marker
    if len(text) > 1024:
        raise ProtocolError("bad_field", "'candidate' is too long", "candidate", ref)
    mline = _field(raw, "sdpMLineIndex", int, ref, required=False)
    mid = _field(raw, "sdpMid", str, ref, required=False)
    if mid is None and mline is None:
        raise ProtocolError("bad_field", "'candidate' needs sdpMid or sdpMLineIndex",
                            "candidate", ref)
    return IceCandidate(text, mid, mline)


def _text(obj: dict[str, Any], name: str, ref: Any, limit: int, where: str = "",
          required: bool = True) -> str | None:
    """A string field, stripped; required ones must not be blank. Errors name `where.name`."""
    label = f"{where}{name}"
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise ProtocolError("bad_field", f"'{label}' must be str", label, ref)
    value = (value or "").strip()
    if len(value) > limit:
        raise ProtocolError("bad_field", f"'{label}' is longer than {limit}", label, ref)
    if required and not value:
        raise ProtocolError("bad_field", f"'{label}' is required", label, ref)
    return value or None


def _terminate(obj: dict[str, Any], ref: Any) -> Terminate:
    reason = _field(obj, "reason", str, ref)
    if reason not in TERMINATE_REASONS:
        raise ProtocolError("bad_field", "'reason' must be one of " + ", ".join(TERMINATE_REASONS),
                            "reason", ref)
    text = _text(obj, "text", ref, 500, required=reason == "other")
    referral = _field(obj, "referral", dict, ref)
    hospital = _text(referral, "hospital", ref, 200, "referral.")
    department = _text(referral, "department", ref, 100, "referral.")
    urgency = referral.get("urgency")
    if urgency not in URGENCIES:
        raise ProtocolError("bad_field", "'referral.urgency' must be one of "
                            + ", ".join(URGENCIES), "referral.urgency", ref)
    note = _text(referral, "note", ref, 1000, "referral.", required=False) or ""
    return Terminate(ref, reason, text, str(hospital), str(department), str(urgency), note)


def parse(raw: str | bytes, max_bytes: int) -> Message:
    """One client frame → one Message, or a ProtocolError saying exactly what is wrong."""
    if len(raw) > max_bytes:
        raise ProtocolError("too_large", f"message is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "a message must be a JSON object")
    ref = obj.get("id")
    if ref is not None and (not isinstance(ref, (str, int)) or isinstance(ref, bool)):
        raise ProtocolError("bad_field", "'id' must be a string or an integer", "id")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("unknown_type", "'type' is missing", "type", ref)
    if kind == "join":
        return Join(ref, _field(obj, "protocol", int, ref))
    if kind == "offer":
        sdp = _field(obj, "sdp", str, ref)
        if len(sdp) > MAX_SDP_BYTES or not sdp.startswith("v=0"):
            raise ProtocolError("bad_field", "'sdp' is not an SDP offer", "sdp", ref)
        return Offer(ref, sdp)
    if kind == "candidate":
        if "candidate" not in obj:
            raise ProtocolError("bad_field", "'candidate' is required", "candidate", ref)
        return Candidate(ref, _candidate(obj, ref))
    if kind == "accept":
        return Accept(ref)
    if kind == "end":
        reason = _field(obj, "reason", str, ref, required=False) or "completed"
        return End(ref, reason[:200])
    if kind == "consent":
        version = _field(obj, "version", str, ref)
        if not 0 < len(version) <= 40:
            raise ProtocolError("bad_field", "'version' must be 1-40 characters", "version", ref)
        return Consent(ref, version)
    if kind == "terminate":
        return _terminate(obj, ref)
    if kind == "prescribe":  # issue 4
        return _prescribe(obj, ref)
    if kind == "quality":  # issue 11
        return _quality(obj, ref)
    if kind == "leave":
        return Leave(ref)
    if kind == "ping":
        return Ping(ref)
    raise ProtocolError("unknown_type", f"unknown message type '{kind[:40]}'", "type", ref)
