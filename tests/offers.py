"""Real SDP offers for the signaling tests: aiortc's, made now or captured, and Chromium's,
captured (tests/sdp/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection

SAVED = Path(__file__).parent / "sdp"
CHROMIUM: dict[str, Any] = json.loads((SAVED / "chromium_offer.json").read_text())
AIORTC: dict[str, Any] = json.loads((SAVED / "aiortc_offer.json").read_text())
# What every m-section of a repeated offer keeps: enough for aiortc to take it.
_KEPT = ("c=", "a=sendrecv", "a=rtcp-mux", "a=ice-ufrag:", "a=ice-pwd:", "a=setup:",
         "a=fingerprint:sha-256", "a=rtpmap:96 opus/", "a=rtpmap:97 VP8/")


async def aiortc_offer(*kinds: str) -> str:
    """A real offer from aiortc, as bench/client.py makes it (one transceiver per kind)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for kind in kinds or ("audio", "video"):
            pc.addTransceiver(kind, direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


def repeated_sections(offer: str, count: int) -> str:
    """`offer` (aiortc's: audio then video) with `count` m-sections, alternately its audio and
    its video one, each cut to the lines aiortc needs so that 100 fit in a 64 KiB frame."""
    lines = offer.split("\r\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    session = [line for line in lines[:starts[0]] if not line.startswith("a=group:")]
    sections = [lines[starts[0]:starts[1]], lines[starts[1]:]]
    out = [*session, "a=group:BUNDLE " + " ".join(map(str, range(count)))]
    for mid in range(count):
        section = sections[mid % 2]
        out += [section[0], *(line for line in section[1:] if line.startswith(_KEPT)),
                f"a=mid:{mid}"]
    return "\r\n".join(out) + "\r\n"


async def negotiate(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    """`a` offers, `b` answers: two aiortc peers of one test, connected on their own."""
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
