"""Every client → node signaling message as a pydantic model: the one description of what a page
may send (PROTOCOL.md's "Client → node" table is checked against these in
tests/test_protocol_doc.py).

The models are strict (no "1" for 1, no true for 1), bounded (string lengths, number ranges,
enumerations, the SDP's size) and take text only without control characters or lone surrogates,
so that whatever passes can be stored, hashed into the audit chain and sent on as it is. Unknown
fields are ignored (newer clients may add some). `protocol.parse` turns a frame into one of these
with pydantic's JSON parser, which also bounds nesting depth.
"""

from __future__ import annotations

import functools
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from core.fields import text, text_only
from core.store.clinical import DOCTOR_REASONS, URGENCIES

PROTOCOL_VERSION = 1
QUALITY_LEVELS = ("good", "fair", "poor")
QUALITY_LIMITATIONS = ("none", "bandwidth", "cpu", "other")
MAX_SDP_BYTES = 64 * 1024
MAX_ID_CHARS = 128
MAX_PRESCRIPTION_ITEMS = 20
MAX_DOWNLINK_KBPS = 10_000_000  # 10 Gbit/s: more is no measurement


def _message_id(value: object) -> str | int:
    """`id`: a string or an integer (not a boolean), echoed back as `re`."""
    if isinstance(value, str):
        if len(value) > MAX_ID_CHARS:
            raise PydanticCustomError("id", f"must be at most {MAX_ID_CHARS} characters")
        return text_only(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 2**53:
            raise PydanticCustomError("id", "must be a safe integer (|id| ≤ 2^53)")
        return value
    raise PydanticCustomError("id", "must be a string or an integer")


Text = functools.partial(text, min_length=0)  # the bounded text of every HTTP body too


MessageId = Annotated[str | int, PlainValidator(_message_id)]


class ClientMessage(BaseModel):
    """Fields every message may carry."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore", allow_inf_nan=False,
                              populate_by_name=True)
    id: MessageId | None = None


class Join(ClientMessage):
    """First message; again after a reconnect."""

    type: Literal["join"]
    protocol: int  # must be PROTOCOL_VERSION: else `bad_protocol`, not `bad_field`
    # The page's own measure of its downlink before any media (the pre-call test's, or how fast
    # its files loaded): where the node starts this receiver's bandwidth bound (bandwidth.py).
    downlink_kbps: Annotated[int, Field(ge=1, le=MAX_DOWNLINK_KBPS)] | None = None


def _sdp_offer(value: str) -> str:
    if len(value.encode("utf-8", "replace")) > MAX_SDP_BYTES or not value.startswith("v=0"):
        raise PydanticCustomError("sdp", "is not an SDP offer (it starts with v=0 and is at "
                                  f"most {MAX_SDP_BYTES} bytes)")
    return value


class Offer(ClientMessage):
    """A new peer connection's offer; its structure is checked by `sdp_check` once joined."""

    type: Literal["offer"]
    sdp: Annotated[str, StringConstraints(max_length=MAX_SDP_BYTES), AfterValidator(_sdp_offer)]


class IceCandidate(BaseModel):
    """One trickled ICE candidate, as the browser's RTCIceCandidate gives it."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore", populate_by_name=True)
    candidate: Text(1024, strip=False)
    sdp_mid: Text(64, strip=False) | None = Field(None, alias="sdpMid")
    sdp_mline_index: Annotated[int, Field(ge=0, le=1023)] | None = Field(
        None, alias="sdpMLineIndex")

    @model_validator(mode="after")
    def _placed(self) -> IceCandidate:
        if self.candidate and self.sdp_mid is None and self.sdp_mline_index is None:
            raise PydanticCustomError("candidate", "needs sdpMid or sdpMLineIndex")
        return self


class Candidate(ClientMessage):
    """Trickle ICE from the browser; `candidate: null` (or an empty one) ends the candidates."""

    type: Literal["candidate"]
    candidate: IceCandidate | None

    @field_validator("candidate")
    @classmethod
    def _end_marker(cls, value: IceCandidate | None) -> IceCandidate | None:
        return None if value is not None and not value.candidate else value


class Accept(ClientMessage):
    """Doctor: start the consultation."""

    type: Literal["accept"]


def _completed(value: str | None) -> str:
    return value or "completed"


class End(ClientMessage):
    """Doctor: end the consultation."""

    type: Literal["end"]
    reason: Annotated[Text(200) | None, AfterValidator(_completed)] = Field(
        None, validate_default=True)


class Consent(ClientMessage):
    """The guardian accepts the informed-consent text of `version` (issue 6)."""

    type: Literal["consent"]
    version: Text(40, min_length=1, strip=False)


class Referral(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")
    hospital: Text(200, min_length=1)
    department: Text(100, min_length=1)
    urgency: Literal[URGENCIES]  # type: ignore[valid-type]
    note: Text(1000) | None = None


class Terminate(ClientMessage):
    """The doctor ends the consultation at once and refers the patient (issue 6)."""

    type: Literal["terminate"]
    reason: Literal[DOCTOR_REASONS]  # type: ignore[valid-type]
    text: Text(500) | None = Field(None, validate_default=True)
    referral: Referral

    @field_validator("text")
    @classmethod
    def _text_for_other(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("reason") == "other" and not value:
            raise PydanticCustomError("required", "is required when the reason is 'other'")
        return value or None


class PrescriptionItem(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")
    drug: Text(200, min_length=1)
    dose: Text(100, min_length=1)
    route: Text(50) | None = None
    frequency: Text(100) | None = None
    days: Text(10) | None = None
    note: Text(500) | None = None

    def record(self) -> dict[str, str]:
        """The item as stored in the `prescription.issued` event: the fields given."""
        return {k: v for k, v in self.model_dump().items() if v}


class Prescribe(ClientMessage):
    """The doctor issues a prescription (issue 4: refused for a child under 6 unless the guardian
    and the doctor are present)."""

    type: Literal["prescribe"]
    items: Annotated[tuple[PrescriptionItem, ...],
                     Field(min_length=1, max_length=MAX_PRESCRIPTION_ITEMS)]


class Quality(ClientMessage):
    """What the page itself receives, from its own getStats (issue 11): the node passes it to the
    other participant (its "the doctor's connection is weak") and keeps it for ops."""

    FIGURES: ClassVar[tuple[str, ...]] = ("fps", "freezes", "freeze_s", "loss_percent", "rtt_ms",
                                          "concealed_percent", "kbps")
    type: Literal["quality"]
    level: Literal[QUALITY_LEVELS]  # type: ignore[valid-type]
    fps: Annotated[float, Field(ge=0, le=240)] | None = None
    freezes: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    freeze_s: Annotated[float, Field(ge=0, le=86_400)] | None = None
    loss_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    rtt_ms: Annotated[float, Field(ge=0, le=600_000)] | None = None
    concealed_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    kbps: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    limitation: Literal[QUALITY_LIMITATIONS] | None = None  # type: ignore[valid-type]

    @property
    def figures(self) -> dict[str, float | int | str]:
        """The figures given, rounded as they are passed on (tenths; freezes a count)."""
        figures: dict[str, float | int | str] = {}
        for name in self.FIGURES:
            value = getattr(self, name)
            if value is not None:
                figures[name] = value if isinstance(value, int) else round(value, 1)
        if self.limitation is not None:
            figures["limitation"] = self.limitation
        return figures


class Leave(ClientMessage):
    """Leave; the consultation goes on."""

    type: Literal["leave"]


class Ping(ClientMessage):
    """Keep-alive; answered with `pong`."""

    type: Literal["ping"]


Message = Join | Offer | Candidate | Accept | End | Consent | Terminate | Prescribe | Quality | \
    Leave | Ping
MESSAGES: TypeAdapter[Message] = TypeAdapter(Annotated[Message, Field(discriminator="type")])
