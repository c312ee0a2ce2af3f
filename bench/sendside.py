"""What the node's send-side estimate costs per video packet (signaling/sendside.py).

    python -m bench.sendside [--packets 20000] [--repeat 5]

Three costs on the node's path for each video packet it sends a browser: numbering it
(`SendSide.stamp`, a copy of the packet with one more header extension), and its share of the
browser's feedback (`twcc.parse` and `DelayBound.update`, one feedback per 50 packets here,
Chromium's size at video rates). Beside them, in the same run, aiortc's own `serialize` of the
same packet, which the node pays anyway: the ratio is what to read on a noisy machine. The
best of `--repeat` runs; JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from aiortc import rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

from signaling.bandwidth import Link
from signaling.sendside import SendSide
from signaling.twcc import feedback

PER_FEEDBACK = 50
VIDEO_BPS = 1_500_000  # a consultation's video each way at full rate
PACKET_BYTES = 1_100


def best_us(run: Callable[[], None], count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    extensions = rtp.HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(
            id=2, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")]))
    packet = rtp.RtpPacket(payload_type=96, sequence_number=1, timestamp=0, ssrc=1,
                           payload=bytes(PACKET_BYTES))
    packet.extensions.mid, packet.extensions.abs_send_time = "1", 123_456
    data = packet.serialize(extensions)
    n = args.packets - args.packets % PER_FEEDBACK

    def serialize() -> None:
        for _ in range(n):
            packet.serialize(extensions)

    side = SendSide(Link(), extension_id=3)

    def stamp() -> None:
        for _ in range(n):
            side.stamp(data)

    # Feedback for the packets just numbered: 1 ms apart, as at ~9 Mbit/s; what matters is the
    # per-packet work, not the spacing.
    fcis = []
    for first in range(0, n, PER_FEEDBACK):
        arrivals = [10_000_000 + (first + i) * 1_000 for i in range(PER_FEEDBACK)]
        fcis.append(feedback(1, 2, first // PER_FEEDBACK, first & 0xFFFF, arrivals)[12:])

    def read_feedback() -> None:
        for fci in fcis:
            side.feedback(fci)

    stamp()  # numbers 0 .. n-1, which the feedback above covers
    costs = {"aiortc_serialize_us": best_us(serialize, n, args.repeat),
             "stamp_us": best_us(stamp, n, args.repeat),
             "feedback_us": best_us(read_feedback, n, args.repeat)}
    packets_per_s = 2 * VIDEO_BPS / 8 / PACKET_BYTES  # both participants' video
    per_packet = costs["stamp_us"] + costs["feedback_us"]
    print(json.dumps({
        "packets": n, "repeat": args.repeat,
        **{k: round(v, 2) for k, v in costs.items()},
        "per_packet_us": round(per_packet, 2),
        "ratio_to_aiortc_serialize": round(per_packet / costs["aiortc_serialize_us"], 2),
        "percent_of_a_core_per_consultation_at_full_rate": round(
            per_packet * packets_per_s / 1e4, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
