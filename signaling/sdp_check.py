"""Structural checks of a participant's SDP offer and trickled ICE candidates, before aiortc.

aiortc's SDP parser trusts its input: a cut `m=` line or a garbled candidate is an
AssertionError, `a=setup:bogus` a KeyError, an offer without `a=fingerprint` is answered and then
fails in a background task. So every line aiortc would parse is checked here first against the
grammar it expects (RFC 8866, RFC 8839, JSEP), and the shape PROTOCOL.md promises: exactly one
audio and one video m-line. The result names the line and what is wrong with it.

The checks are deliberately narrower than SDP allows where aiortc is (an `a=extmap` with
extension attributes, an `a=ssrc` without a value): such an offer could not be applied anyway.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass, field

KINDS = ("audio", "video")
# What the relay forwards: the offer must include these (signaling/peer.py, CODECS).
REQUIRED_CODECS = {"audio": "opus/48000", "video": "vp8/90000"}
FINGERPRINT_BYTES = {"sha-256": 32, "sha-384": 48, "sha-512": 64}
SETUP_VALUES = ("actpass", "active", "passive")
DIRECTIONS = ("inactive", "sendonly", "recvonly", "sendrecv")
CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
MAX_CANDIDATES = 64  # per m-section: a browser with many interfaces offers a dozen or two
MAX_LINE = 4096

_ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_M_LINE = re.compile(r"m=([a-z]+) ([0-9]{1,5}) ([A-Z/]+) (\S+(?: \S+)*)")
_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+")
_INT_FMTP = ("apt", "max-fr", "max-fs", "maxplaybackrate", "minptime", "stereo",
             "useinbandfec")  # aiortc reads these with int()


class SdpError(ValueError):
    """The offer (or candidate) is not what the node can apply; `code` is the error code."""

    def __init__(self, message: str, code: str = "bad_sdp") -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Section:
    kind: str
    line: int
    attrs: dict[str, list[str]] = field(default_factory=dict)
    payload_types: list[int] = field(default_factory=list)


def check_offer(sdp: str) -> None:
    """Raise SdpError unless `sdp` is an offer aiortc can apply safely, with exactly one audio
    and one video m-line (code `unsupported_media` for other media, `bad_sdp` for the rest)."""
    if not sdp.isascii():
        raise SdpError("the offer must be ASCII text")
    lines = sdp.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    session: dict[str, list[str]] = {}
    sections: list[_Section] = []
    for number, text in enumerate(lines, 1):
        line = text.removesuffix("\r")
        _check_line_text(number, line)
        if number == 1:
            if line != "v=0":
                raise SdpError("line 1: an offer starts with v=0")
            continue
        kind, value = line[0], line[2:]
        if kind == "v":
            raise SdpError(f"line {number}: a second v= line")
        if kind == "m":
            sections.append(_media_line(number, line))
        elif kind == "c":
            _connection(number, value)
        elif kind == "a":
            target = sections[-1].attrs if sections else session
            name, _, rest = value.partition(":")
            target.setdefault(name, []).append(rest)
            _attribute(number, name, rest)
    _check_media_shape(sections)
    for section in sections:
        _check_section(section, session)
    _check_bundle(session, sections)


def check_candidate(text: str) -> None:
    """Raise SdpError (code `bad_field`) unless `text` is one ICE candidate (RFC 8839 §5.1),
    with or without its `candidate:` prefix."""
    try:
        _candidate(text.removeprefix("candidate:"))
    except SdpError as exc:
        raise SdpError(str(exc), "bad_field") from None


def _check_line_text(number: int, line: str) -> None:
    if len(line) > MAX_LINE:
        raise SdpError(f"line {number}: longer than {MAX_LINE} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in line):
        raise SdpError(f"line {number}: control characters")
    if len(line) < 2 or line[1] != "=" or not "a" <= line[0] <= "z":
        raise SdpError(f"line {number}: not a <type>=<value> line")


def _media_line(number: int, line: str) -> _Section:
    match = _M_LINE.fullmatch(line)
    if match is None:
        raise SdpError(f"line {number}: malformed m= line (m=<media> <port> <proto> <formats>)")
    kind, port, _, formats = match.groups()
    if int(port) > 65535:
        raise SdpError(f"line {number}: port out of range")
    section = _Section(kind, number)
    if kind in KINDS:
        for fmt in formats.split():
            if not fmt.isdigit() or int(fmt) > 127 or 72 <= int(fmt) <= 76:
                raise SdpError(f"line {number}: payload type {fmt[:10]!r} is not 0-127 (nor "
                               "72-76)")
            section.payload_types.append(int(fmt))
    return section


def _connection(number: int, value: str) -> None:
    match = re.fullmatch(r"IN (IP4|IP6) (\S+)", value)
    if match is None:
        raise SdpError(f"line {number}: malformed c= line (c=IN IP4|IP6 <address>)")


def _int(number: int, text: str, what: str, lo: int = 0, hi: int = 2**32 - 1) -> int:
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise SdpError(f"line {number}: {what} must be an integer {lo}-{hi}")
    return int(text)


def _attribute(number: int, name: str, value: str) -> None:
    """The attributes aiortc parses, each in the form its parser needs."""
    where = f"line {number} (a={name})"
    if name == "fingerprint":
        bits = value.split(" ")
        if len(bits) != 2 or bits[0].lower() not in FINGERPRINT_BYTES:
            raise SdpError(f"{where}: needs a sha-256, sha-384 or sha-512 fingerprint")
        if (not _FINGERPRINT.fullmatch(bits[1])
                or len(bits[1].split(":")) != FINGERPRINT_BYTES[bits[0].lower()]):
            raise SdpError(f"{where}: the fingerprint is not {bits[0]} hex bytes")
    elif name == "setup":
        if value not in SETUP_VALUES:
            raise SdpError(f"{where}: must be one of {', '.join(SETUP_VALUES)}")
    elif name in ("ice-ufrag", "ice-pwd"):
        low, high = (4, 256) if name == "ice-ufrag" else (22, 256)
        if not _ICE_CHARS.fullmatch(value) or not low <= len(value) <= high:
            raise SdpError(f"{where}: must be {low}-{high} ICE characters")
    elif name in ("group", "msid-semantic"):
        if not value.split():
            raise SdpError(f"{where}: empty")
    elif name == "candidate":
        try:
            _candidate(value)
        except SdpError as exc:
            raise SdpError(f"{where}: {exc}") from None
    elif name == "extmap":
        match = re.fullmatch(r"([0-9]{1,3})(?:/([a-z]+))? (\S+)", value)
        if match is None or not 1 <= int(match[1]) <= 255 or (
                match[2] is not None and match[2] not in DIRECTIONS):
            raise SdpError(f"{where}: must be <id 1-255>[/<direction>] <uri>")
    elif name in ("max-message-size", "sctp-port"):
        _int(number, value, name)
    elif name == "rtcp":
        port, _, address = value.partition(" ")
        _int(number, port, "the rtcp port", 0, 65535)
        if address:
            _connection(number, address)
    elif name == "rtpmap":
        match = re.fullmatch(r"([0-9]{1,3}) ([^/ ]+)/([0-9]{1,6})(?:/([0-9]{1,2}))?", value)
        if match is None:
            raise SdpError(f"{where}: must be <payload type> <name>/<clock rate>[/<channels>]")
        _int(number, match[1], "the payload type", 0, 127)
    elif name == "sctpmap":
        if re.fullmatch(r"[0-9]{1,5} \S.*", value) is None:
            raise SdpError(f"{where}: must be <number> <description>")
    elif name == "ssrc-group":
        bits = value.split()
        if not bits or not all(b.isdigit() and int(b) < 2**32 for b in bits[1:]):
            raise SdpError(f"{where}: must be <semantics> <ssrc>...")
    elif name == "ssrc":
        if re.fullmatch(r"[0-9]{1,10} [^: ]+:.*", value) is None or int(value.split()[0]) >= 2**32:
            raise SdpError(f"{where}: must be <ssrc> <attribute>:<value>")
    elif name == "fmtp":
        _fmtp(where, value)
    elif name == "rtcp-fb":
        if re.fullmatch(r"(\*|[0-9]{1,3}) \S+( \S.*)?", value) is None:
            raise SdpError(f"{where}: must be <payload type|*> <type> [<parameter>]")


def _fmtp(where: str, value: str) -> None:
    match = re.fullmatch(r"([0-9]{1,3}) (\S.*)", value)
    if match is None:
        raise SdpError(f"{where}: must be <payload type> <parameters>")
    for param in match[2].split(";"):
        key, eq, val = param.partition("=")
        if key in _INT_FMTP and eq and not (val.isdigit() and len(val) <= 10):
            raise SdpError(f"{where}: {key} must be an integer")


def _candidate(value: str) -> None:
    """foundation component transport priority address port typ type *(name value)."""
    bits = value.split(" ")
    if len(bits) < 8 or len(bits) % 2:
        raise SdpError("an ICE candidate is <foundation> <component> <transport> <priority> "
                       "<address> <port> typ <type> [<name> <value>]...")
    foundation, component, transport, priority, address, port, typ, kind = bits[:8]
    if not _ICE_CHARS.fullmatch(foundation) or len(foundation) > 32:
        raise SdpError("the candidate's foundation must be 1-32 ICE characters")
    if not (component.isdigit() and 1 <= int(component) <= 256):
        raise SdpError("the candidate's component must be 1-256")
    if transport.lower() not in ("udp", "tcp"):
        raise SdpError("the candidate's transport must be udp or tcp")
    if not (priority.isdigit() and len(priority) <= 10 and int(priority) < 2**32):
        raise SdpError("the candidate's priority must be an integer below 2^32")
    _address(address, "address")
    if not (port.isdigit() and int(port) <= 65535):
        raise SdpError("the candidate's port must be 0-65535")
    if typ != "typ" or kind not in CANDIDATE_TYPES:
        raise SdpError(f"the candidate's type must be typ {'|'.join(CANDIDATE_TYPES)}")
    for name, val in zip(bits[8::2], bits[9::2], strict=True):
        if not _TOKEN.fullmatch(name) or not val or len(val) > 256:
            raise SdpError("the candidate's extensions must be <name> <value> pairs")
        if name == "raddr":
            _address(val, "raddr")
        elif name == "rport" and not (val.isdigit() and int(val) <= 65535):
            raise SdpError("the candidate's rport must be 0-65535")


def _address(text: str, what: str) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOSTNAME.fullmatch(text):
            raise SdpError(f"the candidate's {what} must be an IP address or a host name") from None


def _check_media_shape(sections: list[_Section]) -> None:
    if not sections:
        raise SdpError("the offer has no m= line")
    kinds = Counter(s.kind for s in sections)
    if len(sections) != 2 or kinds != Counter(KINDS):
        found = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
        raise SdpError("the offer must have exactly one audio and one video m-line, as the "
                       f"protocol says (it has {len(sections)}: {found})", "unsupported_media")


def _check_section(section: _Section, session: dict[str, list[str]]) -> None:
    where = f"the {section.kind} m-line (line {section.line})"
    attrs = section.attrs

    def one(name: str) -> str | None:
        values = attrs.get(name) or session.get(name) or []
        return values[0] if values else None

    if one("ice-ufrag") is None or one("ice-pwd") is None:
        raise SdpError(f"{where}: a=ice-ufrag and a=ice-pwd are required")
    if not (attrs.get("fingerprint") or session.get("fingerprint")):
        raise SdpError(f"{where}: a=fingerprint is required (DTLS)")
    if one("setup") is None:
        raise SdpError(f"{where}: a=setup is required")
    if "rtcp-mux" not in attrs:
        raise SdpError(f"{where}: a=rtcp-mux is required")
    if sum(len(attrs.get(d, [])) for d in DIRECTIONS) != 1:
        raise SdpError(f"{where}: exactly one direction (a=sendrecv, a=sendonly, a=recvonly or "
                       "a=inactive) is required")
    mids = attrs.get("mid", [])
    if len(mids) != 1 or not _TOKEN.fullmatch(mids[0]) or len(mids[0]) > 64:
        raise SdpError(f"{where}: exactly one a=mid (a token) is required")
    if len(attrs.get("candidate", [])) > MAX_CANDIDATES:
        raise SdpError(f"{where}: more than {MAX_CANDIDATES} candidates")
    mapped = {}
    for rtpmap in attrs.get("rtpmap", []):
        pt, _, codec = rtpmap.partition(" ")
        mapped[int(pt)] = codec.lower()
    for fmtp in attrs.get("fmtp", []):
        pt = int(fmtp.partition(" ")[0])
        if pt not in mapped:
            raise SdpError(f"{where}: a=fmtp for payload type {pt}, which has no a=rtpmap")
    if not any(c.startswith(REQUIRED_CODECS[section.kind]) for c in mapped.values()):
        codec = REQUIRED_CODECS[section.kind].split("/")[0]
        raise SdpError(f"{where}: {codec} is required (the relay forwards {codec} as it is)")


def _check_bundle(session: dict[str, list[str]], sections: list[_Section]) -> None:
    mids = {s.attrs["mid"][0] for s in sections}
    for group in session.get("group", []):
        bits = group.split()
        if bits[0] == "BUNDLE" and not set(bits[1:]) <= mids:
            raise SdpError("a=group:BUNDLE names a mid that no m-line has")
