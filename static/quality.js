// In-call quality (issue 11): what this page receives, from its own getStats every few seconds,
// shown as "my connection", and sent to the node as a `quality` message (signaling/PROTOCOL.md);
// the other side's report arrives the same way and is shown as "the doctor's connection".
//
// State for people and for tests, on document.body.dataset:
//   quality      this page's reception: good | fair | poor (absent before the first reading)
//   peerQuality  the other side's, as it reports it: good | fair | poor | stale
// and #quality-peer's dataset carries the other side's figures (fps, freezes, ...).

import { bilingual } from './bilingual.js';

const $ = (id) => document.getElementById(id);
const body = document.body;

const EVERY_MS = 3000;
const STALE_MS = 3 * EVERY_MS + 2000; // no report for this long: the figures are old

const LEVELS = {
  good: { zh: '良好', en: 'good', tone: 'ok' },
  fair: { zh: '一般', en: 'fair', tone: 'warn' },
  poor: { zh: '较差', en: 'weak', tone: 'danger' },
};

// The badges are live regions: their text changes only with the level (a screen reader then
// says it once), the figures of each reading go into the tooltip.
function setBadge(el, zh, en, tone, title) {
  const wasHidden = el.hidden;
  el.hidden = false;
  el.title = title;
  if (el.dataset.tone === tone && !wasHidden) return;
  el.dataset.tone = tone;
  bilingual(el.querySelector('.badge-label'), zh, en);
}

// Figures over one interval → a level. Thresholds: what people notice on a 15 fps call.
export function level(f) {
  const poor =
    f.fps < 5 || f.freeze_s > 1 || f.loss_percent > 10 || f.rtt_ms > 800 || f.concealed_percent > 15;
  if (poor) return 'poor';
  const fair =
    f.fps < 10 ||
    f.freezes > 0 ||
    f.loss_percent > 3 ||
    f.rtt_ms > 300 ||
    f.concealed_percent > 5 ||
    f.limitation === 'bandwidth';
  return fair ? 'fair' : 'good';
}

function describe(f) {
  const parts = [];
  if (f.fps !== undefined) parts.push(`${f.fps} fps`);
  if (f.freezes !== undefined) parts.push(`卡顿 freezes ${f.freezes}`);
  if (f.loss_percent !== undefined) parts.push(`丢包 loss ${f.loss_percent}%`);
  if (f.rtt_ms !== undefined) parts.push(`RTT ${f.rtt_ms} ms`);
  if (f.concealed_percent !== undefined) parts.push(`音频补偿 concealed ${f.concealed_percent}%`);
  return parts.join(' · ');
}

const round1 = (x) => Math.round(x * 10) / 10;

// Reads one RTCPeerConnection's getStats every EVERY_MS and reports through `send`.
export class QualityMonitor {
  constructor() {
    this.pc = null;
    this.send = null;
    this.timer = 0;
    this.prev = null;
  }

  start(pc, send) {
    this.stop();
    this.pc = pc;
    this.send = send;
    this.prev = null;
    this.timer = setInterval(() => this.tick().catch((err) => console.debug('quality', err)), EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = 0;
    this.pc = null;
  }

  async tick() {
    const pc = this.pc;
    markStale();
    if (!pc || pc.connectionState !== 'connected') return;
    const now = { at: performance.now() };
    let out = null;
    let pair = null;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === 'inbound-rtp') now[s.kind] = s;
      else if (s.type === 'outbound-rtp' && s.kind === 'video') out = s;
      else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
    });
    const prev = this.prev;
    this.prev = now;
    if (this.pc !== pc || !prev || !now.video) return;
    const dt = (now.at - prev.at) / 1000;
    const d = (kind, key) => (now[kind]?.[key] ?? 0) - (prev[kind]?.[key] ?? 0);
    const lost = d('video', 'packetsLost') + d('audio', 'packetsLost');
    const got = d('video', 'packetsReceived') + d('audio', 'packetsReceived');
    const samples = d('audio', 'totalSamplesReceived');
    const f = {
      fps: round1(Math.max(0, d('video', 'framesDecoded')) / dt),
      freezes: Math.max(0, d('video', 'freezeCount')),
      freeze_s: round1(Math.max(0, d('video', 'totalFreezesDuration'))),
      loss_percent: round1(lost + got > 0 ? (100 * Math.max(0, lost)) / (lost + got) : 0),
      concealed_percent: round1(samples > 0 ? (100 * Math.max(0, d('audio', 'concealedSamples'))) / samples : 0),
      kbps: round1(Math.max(0, (d('video', 'bytesReceived') + d('audio', 'bytesReceived')) * 8) / dt / 1000),
    };
    if (pair?.currentRoundTripTime !== undefined) f.rtt_ms = Math.round(pair.currentRoundTripTime * 1000);
    const reason = out?.qualityLimitationReason;
    if (reason) f.limitation = ['none', 'bandwidth', 'cpu'].includes(reason) ? reason : 'other';
    const lvl = level(f);
    body.dataset.quality = lvl;
    const l = LEVELS[lvl];
    setBadge($('quality-self'), `我的网络${l.zh}`, `My connection: ${l.en}`, l.tone, describe(f));
    this.send({ type: 'quality', level: lvl, ...f });
  }
}

let peerAt = 0;

// The other side's `quality` message; `other` names it ({zh: '医生', en: 'The doctor'}).
export function showPeerQuality(msg, other) {
  const l = LEVELS[msg.level];
  if (!l) return;
  peerAt = performance.now();
  body.dataset.peerQuality = msg.level;
  const el = $('quality-peer');
  setBadge(el, `${other.zh}网络${l.zh}`, `${other.en}'s connection is ${l.en}`, l.tone, describe(msg));
  for (const key of ['fps', 'freezes', 'freeze_s', 'loss_percent', 'rtt_ms', 'concealed_percent']) {
    if (msg[key] !== undefined) el.dataset[key.replace(/_(\w)/g, (_, c) => c.toUpperCase())] = String(msg[key]);
  }
}

function markStale() {
  if (peerAt && performance.now() - peerAt > STALE_MS) {
    peerAt = 0;
    body.dataset.peerQuality = 'stale';
    $('quality-peer').hidden = true;
  }
}

// Off the call (left, reconnecting, the end): the badges say nothing rather than something old.
export function hideQuality() {
  $('quality-self').hidden = true;
  $('quality-peer').hidden = true;
  delete body.dataset.quality;
  delete body.dataset.peerQuality;
  peerAt = 0;
}
