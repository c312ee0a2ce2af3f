"""Hypothesis strategies for hostile signaling frames (issue 17).

Three families, each drawn from what a real page sends and then damaged:
- `frames()`: messages of every client type (the shapes of signaling/client_messages.py, or with
  `PROBE_VALID` those of the pre-call probe, server/precall_messages.py) with a
  field replaced, dropped or added, a bad `id` or `type`, values that are the wrong kind, huge,
  deeply nested, non-finite or unusual Unicode (lone surrogates, controls); and raw frames that are
  not JSON messages at all (text, bytes, cut JSON, deep brackets, oversized);
- `offers(base)`: a real offer whose lines are dropped, duplicated, swapped, garbled, cut or
  replaced, or which is cut anywhere;
- `candidates(base)`: a real ICE candidate whose tokens are damaged the same way.
`leave` is not drawn: a valid one would end the sender's part in the call the tests watch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from core.consent import CURRENT_VERSION
from signaling.client_messages import (
    DOCTOR_REASONS,
    QUALITY_LEVELS,
    QUALITY_LIMITATIONS,
    URGENCIES,
)


@dataclass(frozen=True)
class Raw:
    """JSON text put into a message as it is: nesting deeper than `json.dumps` can write."""

    text: str


@dataclass(frozen=True)
class Frame:
    data: str | bytes

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example
        return f"Frame({self.data[:300]!r}{'…' if len(self.data) > 300 else ''})"


def encode(message: Any) -> str:
    """json.dumps, NaN and Infinity included, with each Raw in place."""
    raws: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(message), allow_nan=True)
    return re.sub(r'"@@raw(\d+)@@"', lambda m: raws[int(m[1])], text)


# -- values -----------------------------------------------------------------------------------

any_chars = st.characters(exclude_categories=())  # surrogates and controls included
odd_text = st.one_of(
    st.text(max_size=40),  # any Unicode but surrogates
    st.text(any_chars, max_size=40),
    st.sampled_from(["\ud800", "\udfff", "a\ud83d", "\x00", "\u202e", "\ufeff", "🩺" * 3, " ",
                     "", "null", "<script>", "../../etc/passwd", "%s%n", "\r\n"]),
)
huge_text = st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "🩺", "\ud800"]),
                      st.integers(300, 40_000))
depth = st.one_of(st.integers(1, 250), st.integers(250, 30_000))  # the parser's limit is 200
deep = st.one_of(
    depth.map(lambda n: Raw("[" * n + "]" * n)),
    depth.map(lambda n: Raw('{"a":' * n + "1" + "}" * n)),
)
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**53, max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True), odd_text,
)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(odd_text, inner, max_size=4), max_leaves=12)
# Mostly ordinary wrong values; one in five huge or deeply nested.
hostile = st.integers(0, 4).flatmap(lambda i: json_value if i < 3 else (huge_text, deep)[i - 3])

# -- messages: a valid shape of each type, then damaged --------------------------------------

short = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
                min_size=1, max_size=30)
referral = st.fixed_dictionaries(
    {"hospital": short, "department": short, "urgency": st.sampled_from(URGENCIES)},
    optional={"note": short})
item = st.fixed_dictionaries({"drug": short, "dose": short},
                             optional={"route": short, "days": st.just("3")})
figure = st.floats(0, 100, allow_nan=False)
Shapes = dict[str, st.SearchStrategy[dict[str, Any]]]  # message type → its valid fields
VALID: Shapes = {
    "join": st.fixed_dictionaries({"protocol": st.sampled_from([1, 2])}),
    "offer": st.fixed_dictionaries({"sdp": st.just("v=0\r\n") | short.map("v=0\r\n".__add__)}),
    "candidate": st.fixed_dictionaries({"candidate": st.none() | st.fixed_dictionaries(
        {"candidate": st.sampled_from(["", "candidate:1 1 udp 1 127.0.0.1 9 typ host"]),
         "sdpMid": st.sampled_from(["0", "1"])})}),
    "accept": st.just({}),
    "end": st.fixed_dictionaries({}, optional={"reason": short}),
    "consent": st.fixed_dictionaries({"version": st.just(CURRENT_VERSION) | short}),
    "terminate": st.fixed_dictionaries(
        {"reason": st.sampled_from(DOCTOR_REASONS), "referral": referral},
        optional={"text": short}),
    "prescribe": st.fixed_dictionaries({"items": st.lists(item, min_size=1, max_size=3)}),
    "quality": st.fixed_dictionaries(
        {"level": st.sampled_from(QUALITY_LEVELS)},
        optional={"fps": figure, "freezes": st.integers(0, 5), "rtt_ms": figure,
                  "limitation": st.sampled_from(QUALITY_LIMITATIONS)}),
    "ping": st.just({}),
}
PROBE_VALID: Shapes = {
    "ping": st.fixed_dictionaries({}, optional={"n": st.integers(0, 1000) | st.integers()}),
    "download": st.just({}),
    "uploaded": st.just({}),
}


@st.composite
def damaged(draw: st.DrawFn, valid: Shapes = VALID) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(valid)))
    message: dict[str, Any] = {"type": kind, **draw(valid[kind])}
    if draw(st.booleans()):
        message["id"] = draw(st.one_of(st.integers(-10, 10**6), short, hostile))
    how = draw(st.sampled_from(["valid", "replace", "drop", "add", "type", "nested"]))
    fields = [k for k in message if k != "type"]
    if how == "replace" and fields:
        message[draw(st.sampled_from(fields))] = draw(hostile)
    elif how == "drop" and fields:
        del message[draw(st.sampled_from(fields))]
    elif how == "add":
        message[draw(odd_text)] = draw(hostile)
    elif how == "type":
        message["type"] = draw(st.one_of(odd_text, json_leaf, st.sampled_from(
            ["Ping", "ping ", "leave\x00", "offer\ud800"])))
    elif how == "nested":
        inner = [v for v in message.values() if isinstance(v, dict)]
        inner += [v[0] for v in message.values()
                  if isinstance(v, list) and v and isinstance(v[0], dict)]
        if inner:
            target = draw(st.sampled_from(inner))
            target[draw(st.sampled_from([*target, "extra"]))] = draw(hostile)
    return message


raw_frames = st.one_of(
    st.text(any_chars, max_size=200),
    st.binary(max_size=200).map(Frame),
    st.integers(1, 60_000).map(lambda n: "[" * n),
    st.builds(lambda m, cut: encode(m)[:cut], damaged(), st.integers(0, 200)),
    st.integers(65_537, 200_000).map(lambda n: '{"type": "ping", "pad": "' + "x" * n + '"}'),
)


def frames(valid: Shapes = VALID) -> st.SearchStrategy[Frame]:
    """Whole frames: damaged messages (of the shapes in `valid`) and raw ones."""
    messages = damaged(valid).map(lambda m: Frame(encode(m)))
    raw = raw_frames.map(lambda f: f if isinstance(f, Frame) else Frame(f))
    return st.integers(0, 3).flatmap(lambda i: messages if i else raw).filter(  # 3 in 4 messages
        lambda f: len(f.data) < 1_000_000)  # past 1 MiB the node closes the socket (by design)


# -- SDP and ICE ------------------------------------------------------------------------------

garbage = st.one_of(odd_text, st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                      max_size=30), st.integers(-2**40, 2**70).map(str))
LINES = ["m=video", "m=audio 9 UDP/TLS/RTP/SAVPF 96", "m=application 9 UDP/DTLS/SCTP "
         "webrtc-datachannel", "a=setup:", "a=fingerprint:sha-256 ", "a=candidate:",
         "a=group:BUNDLE ", "a=fmtp:", "a=rtpmap:", "a=ssrc:", "a=extmap:", "a=ice-ufrag:",
         "a=rtcp-fb:", "a=mid:", "c=IN IP4 ", "v=", "a=ssrc-group:FID ", ""]


@st.composite
def _edit(draw: st.DrawFn, lines: list[str]) -> list[str]:
    lines = list(lines)
    at = draw(st.integers(0, 10**6)) % max(len(lines), 1)
    how = draw(st.sampled_from(["drop", "duplicate", "swap", "garble", "cut", "value", "token",
                                "insert", "repeat_section"]))
    if not lines:
        return [draw(st.sampled_from(LINES)) + draw(garbage)]
    line = lines[at]
    if how == "drop":
        del lines[at]
    elif how == "duplicate":
        lines.insert(at, line)
    elif how == "swap":
        other = draw(st.integers(0, len(lines) - 1))
        lines[at], lines[other] = lines[other], line
    elif how == "garble":
        start = draw(st.integers(0, len(line)))
        lines[at] = line[:start] + draw(garbage) + line[start + draw(st.integers(0, 5)):]
    elif how == "cut":
        lines[at] = line[:draw(st.integers(0, len(line)))]
    elif how == "value":
        lines[at] = line.split(":", 1)[0] + ":" + draw(garbage)
    elif how == "token":
        tokens = line.split(" ")
        tokens[draw(st.integers(0, len(tokens) - 1))] = draw(garbage)
        lines[at] = " ".join(tokens)
    elif how == "insert":
        lines.insert(at, draw(st.sampled_from(LINES)) + draw(garbage))
    else:  # another copy of the m-section that holds this line
        starts = [i for i, text in enumerate(lines) if text.startswith("m=")] or [0]
        begin = max([s for s in starts if s <= at], default=starts[0])
        end = min([s for s in starts if s > begin], default=len(lines))
        lines += lines[begin:end] * draw(st.integers(1, 3))
    return lines


@st.composite
def offers(draw: st.DrawFn, bases: list[str]) -> str:
    """A real offer (one of `bases`) after 1-4 edits, or cut anywhere."""
    sdp = draw(st.sampled_from(bases))
    if draw(st.integers(0, 9)) == 0:
        return sdp[:draw(st.integers(0, len(sdp)))]
    lines = sdp.rstrip("\r\n").split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        lines = draw(_edit(lines))
    return "\r\n".join(lines) + draw(st.sampled_from(["\r\n", "\n", "", "\r\n\r\n"]))


@st.composite
def candidates(draw: st.DrawFn, bases: list[str]) -> dict[str, Any]:
    """A real candidate (one of `bases`) with damaged tokens, placed on a real or a bad mid."""
    tokens = draw(st.sampled_from(bases)).removeprefix("candidate:").split(" ")
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(tokens)))
        how = draw(st.sampled_from(["drop", "replace", "insert", "cut"]))
        if how == "drop" and at < len(tokens):
            del tokens[at]
        elif how == "replace" and at < len(tokens):
            tokens[at] = draw(st.one_of(garbage, st.sampled_from(
                ["typ", "raddr", "rport", "host", "relay", "prflx", "::1", "fe80::1%eth0",
                 "x.local", "999999", "-1", "tcp", "tcptype", "0.0.0.0", "255.255.255.255"])))
        elif how == "insert":
            tokens.insert(at, draw(garbage))
        elif how == "cut":
            tokens = tokens[:at]
    text = " ".join(tokens)
    return {"candidate": draw(st.sampled_from(["candidate:", ""])) + text,
            "sdpMid": draw(st.sampled_from(["0", "1", "9", None])),
            "sdpMLineIndex": draw(st.sampled_from([0, 1, 7, None]))}
