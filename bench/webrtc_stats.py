"""getStats from a page's RTCPeerConnection, sampled over time, and what a window of samples says.

The pages keep their peer connections to themselves, so `RECORD_PCS` (a Playwright init script)
remembers every RTCPeerConnection a page creates in `window.__harnessPcs`; `SAMPLE_JS` reads the
newest one. Counters restart when a page makes a new connection (a reconnect): window totals add
up the increments between consecutive samples and count a drop in a counter as a restart.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RECORD_PCS = """
(() => {
  const Original = window.RTCPeerConnection;
  window.__harnessPcs = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) { super(...args); window.__harnessPcs.push(this); }
  };
})();
"""

SAMPLE_JS = """
async () => {
  const pick = (s, keys) =>
    Object.fromEntries(keys.filter(k => s[k] !== undefined).map(k => [k, s[k]]));
  const pcs = window.__harnessPcs || [];
  const d = document.body ? document.body.dataset : {};
  const out = {t: performance.now() / 1000, pcs: pcs.length, phase: d.phase || null,
               peer: d.peer || null, media: d.media || null, state: d.state || null};
  const pc = pcs[pcs.length - 1];
  if (!pc) return out;
  out.connection = pc.connectionState;
  const report = await pc.getStats();
  let pairId = null;
  report.forEach(s => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  report.forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') out.vin = pick(s, ['bytesReceived',
      'framesDecoded', 'framesDropped', 'freezeCount', 'totalFreezesDuration', 'packetsLost',
      'packetsReceived', 'nackCount', 'pliCount', 'firCount', 'frameWidth', 'frameHeight',
      'keyFramesDecoded']);
    else if (s.type === 'inbound-rtp' && s.kind === 'audio') out.ain = pick(s, [
      'concealedSamples', 'totalSamplesReceived', 'packetsLost', 'packetsReceived']);
    else if (s.type === 'outbound-rtp' && s.kind === 'video') out.vout = pick(s, ['bytesSent',
      'retransmittedBytesSent', 'framesEncoded', 'framesSent', 'targetBitrate',
      'qualityLimitationReason', 'qualityLimitationDurations', 'nackCount', 'pliCount',
      'frameWidth', 'frameHeight', 'keyFramesEncoded']);
    else if (s.type === 'remote-inbound-rtp' && s.kind === 'video') out.rin = pick(s, [
      'roundTripTime', 'fractionLost', 'packetsLost']);
    else if (s.type === 'candidate-pair' && s.id === pairId) out.pair = pick(s, [
      'currentRoundTripTime', 'availableOutgoingBitrate', 'bytesReceived', 'bytesSent']);
  });
  return out;
}
"""

Sample = dict[str, Any]  # one SAMPLE_JS result plus "at": the harness's monotonic clock


def value(sample: Sample, path: str) -> Any:
    """`value(s, "vin.framesDecoded")`: None where the stat (or the stream) is missing."""
    node: Any = sample
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def total(samples: list[Sample], path: str) -> float:
    """How much a counter grew across `samples`, across restarts (a new peer connection)."""
    grown, previous = 0.0, None
    for s in samples:
        v = value(s, path)
        if v is None:
            continue
        if previous is not None:
            grown += v - previous if v >= previous else v
        previous = v
    return grown


def per_second(samples: list[Sample], path: str) -> float | None:
    if len(samples) < 2:
        return None
    seconds = samples[-1]["t"] - samples[0]["t"]
    return total(samples, path) / seconds if seconds > 0 else None


def rates(samples: list[Sample], path: str, scale: float = 1.0,
          span: int = 2) -> list[tuple[float, float]]:
    """(harness time, rate over the last `span` sample intervals) for a counter.

    Over two 0.5 s intervals, so one key frame does not read as a sending rate.
    """
    out = []
    for i in range(span, len(samples)):
        window = samples[i - span:i + 1]
        dt = window[-1]["t"] - window[0]["t"]
        if dt > 0 and value(window[0], path) is not None and value(window[-1], path) is not None:
            out.append((window[-1]["at"], total(window, path) * scale / dt))
    return out


def median_of(samples: list[Sample], path: str, scale: float = 1.0) -> float | None:
    values = [v * scale for s in samples if (v := value(s, path)) is not None]
    return round(statistics.median(values), 1) if values else None


def max_of(samples: list[Sample], path: str, scale: float = 1.0) -> float | None:
    values = [v * scale for s in samples if (v := value(s, path)) is not None]
    return round(max(values), 1) if values else None


def limitation_shares(samples: list[Sample]) -> dict[str, float]:
    """Share of the window the encoder spent limited by none / cpu / bandwidth / other."""
    keys = ("none", "cpu", "bandwidth", "other")
    spent = {k: total(samples, f"vout.qualityLimitationDurations.{k}") for k in keys}
    whole = sum(spent.values())
    return {k: round(v / whole, 2) for k, v in spent.items()} if whole else {}


def r1(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


@dataclass(frozen=True)
class Window:
    """The samples of one page between two harness times."""

    samples: list[Sample]

    @classmethod
    def of(cls, samples: list[Sample], t0: float, t1: float) -> Window:
        return cls([s for s in samples if t0 <= s["at"] <= t1])

    def receiving(self) -> dict[str, Any]:
        """What this page got from the other side."""
        s = self.samples
        lost, received = total(s, "vin.packetsLost"), total(s, "vin.packetsReceived")
        samples_in = total(s, "ain.totalSamplesReceived")
        bytes_rate = per_second(s, "vin.bytesReceived")
        last = s[-1] if s else {}
        return {
            "video_kbps": r1(None if bytes_rate is None else bytes_rate * 8 / 1000),
            "fps": r1(per_second(s, "vin.framesDecoded")),
            "freeze_count": int(total(s, "vin.freezeCount")),
            "freeze_s": r1(total(s, "vin.totalFreezesDuration")),
            "packets_lost": int(lost),
            "loss_percent": r1(100 * lost / (lost + received)) if lost + received else None,
            "nack_sent": int(total(s, "vin.nackCount")),
            "pli_sent": int(total(s, "vin.pliCount")),
            "audio_concealed_percent": (r1(100 * total(s, "ain.concealedSamples") / samples_in)
                                        if samples_in else None),
            "rtt_ms_median": median_of(s, "pair.currentRoundTripTime", 1000),
            "rtt_ms_max": max_of(s, "pair.currentRoundTripTime", 1000),
            "remote_inbound_rtt_ms_median": median_of(s, "rin.roundTripTime", 1000),
            "frame": f"{value(last, 'vin.frameWidth')}x{value(last, 'vin.frameHeight')}",
        }

    def sending(self) -> dict[str, Any]:
        """What this page's video encoder did."""
        s = self.samples
        bytes_rate = per_second(s, "vout.bytesSent")
        return {
            "video_kbps": r1(None if bytes_rate is None else bytes_rate * 8 / 1000),
            "target_kbps_median": median_of(s, "vout.targetBitrate", 1 / 1000),
            "encoded_fps": r1(per_second(s, "vout.framesEncoded")),
            "quality_limitation": limitation_shares(s),
            "nack_received": int(total(s, "vout.nackCount")),
            "pli_received": int(total(s, "vout.pliCount")),
            "key_frames": int(total(s, "vout.keyFramesEncoded")),
        }


def first_time(points: list[tuple[float, float]], test: Callable[[float], bool],
               after: float) -> float | None:
    """The first harness time at or after `after` whose rate passes `test`."""
    return next((at for at, v in points if at >= after and test(v)), None)
