"""signaling/sdp_check.py: real offers pass (aiortc's, Chromium's), each shape aiortc cannot
take is refused with the line and the reason, before aiortc sees it."""

from __future__ import annotations

import pytest

from signaling.sdp_check import MAX_CANDIDATES, SdpError, check_candidate, check_offer

from .offers import CHROMIUM, aiortc_offer, repeated_sections


def refusal(sdp: str) -> SdpError:
    with pytest.raises(SdpError) as caught:
        check_offer(sdp)
    return caught.value


async def test_real_offers_and_candidates_pass() -> None:
    check_offer(await aiortc_offer())
    check_offer(CHROMIUM["offer"])
    for candidate in CHROMIUM["candidates"]:
        check_candidate(candidate["candidate"])
    check_candidate("candidate:1 1 udp 2113937151 0b5c1f1e-2a43-4f4e-9c1d-3f1e1a2b3c4d.local "
                    "51234 typ host generation 0 network-cost 999")  # an mDNS host candidate
    check_candidate("1 1 UDP 1686052607 203.0.113.7 40000 typ srflx raddr 10.0.0.2 rport 40000")


async def test_the_findings_are_refused_with_the_line() -> None:
    offer = await aiortc_offer()
    bogus = refusal(offer.replace("a=setup:actpass", "a=setup:bogus"))
    assert bogus.code == "bad_sdp" and "a=setup" in str(bogus)
    cut = refusal(offer[:offer.index("m=video") + len("m=video")])
    assert cut.code == "bad_sdp" and "malformed m= line" in str(cut)
    unsigned = refusal("\r\n".join(line for line in offer.split("\r\n")
                                   if not line.startswith("a=fingerprint")))
    assert unsigned.code == "bad_sdp" and "a=fingerprint is required" in str(unsigned)
    four = refusal(await aiortc_offer("audio", "video", "audio", "video"))
    assert four.code == "unsupported_media" and "2 audio, 2 video" in str(four)
    assert refusal(await aiortc_offer("audio")).code == "unsupported_media"
    assert refusal(repeated_sections(offer, 100)).code == "unsupported_media"
    check_offer(repeated_sections(offer, 2))  # the builder itself makes offers that pass
    with pytest.raises(SdpError, match="ICE candidate is") as garbage:
        check_candidate("candidate:garbage")
    assert garbage.value.code == "bad_field"


@pytest.mark.parametrize(("change", "says"), [
    (lambda s: s.replace("v=0", "v=1", 1), "starts with v=0"),
    (lambda s: s.replace("a=ice-ufrag:", "a=ice-ufrag:\x01", 1), "control characters"),
    (lambda s: s.replace("s=-", "s=é"), "ASCII"),
    (lambda s: s.replace("a=rtcp-mux\r\n", "", 1), "a=rtcp-mux is required"),
    (lambda s: s.replace("a=mid:1", "a=mid:1\r\na=mid:2"), "exactly one a=mid"),
    (lambda s: s.replace("a=sendrecv\r\n", "", 1), "exactly one direction"),  # found by fuzzing
    (lambda s: s.replace("a=sendrecv", "a=sendrecv\r\na=inactive", 1), "exactly one direction"),
    (lambda s: s.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 7"), "BUNDLE"),
    (lambda s: s.replace("a=rtpmap:97 VP8/90000", "a=rtpmap:97 VP9/90000"), "vp8 is required"),
    (lambda s: s.replace("a=fmtp:98 apt=97", "a=fmtp:98 apt=x"), "apt must be an integer"),
    (lambda s: s.replace("a=fmtp:98 apt=97", "a=fmtp:55 apt=97"), "no a=rtpmap"),
    (lambda s: s.replace("a=rtpmap:97 VP8/90000", "a=rtpmap:97 VP8"), "a=rtpmap"),
    (lambda s: s.replace("a=ssrc-group:FID", "a=ssrc-group:FID x"), "a=ssrc-group"),
    (lambda s: s.replace("a=fingerprint:sha-256 ", "a=fingerprint:md5 ", 1), "sha-256"),
    (lambda s: s.replace("a=extmap:1 ", "a=extmap:1 a ", 1), "a=extmap"),
    (lambda s: s.replace("c=IN IP4 ", "c=IN IP5 ", 1), "c= line"),
    (lambda s: s.replace(" 96 9 0 8\r\n", " 96 9 0 999\r\n", 1), "payload type"),
    (lambda s: s.replace("a=end-of-candidates", "a=candidate:1 1 udp 1 127.0.0.1 9 typ hostile",
                         1), "candidate's type"),
    (lambda s: s.replace("a=end-of-candidates", "\r\n".join(
        [f"a=candidate:{i} 1 udp 1 127.0.0.1 {i} typ host" for i in range(1, 66)]), 1),
     f"more than {MAX_CANDIDATES} candidates"),
])
async def test_each_rule(change, says: str) -> None:  # type: ignore[no-untyped-def]
    offer = await aiortc_offer()
    mutated = change(offer)
    assert mutated != offer, says
    assert says in str(refusal(mutated))
