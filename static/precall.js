// Pre-call check (issue 11): camera preview, microphone level, speaker test and a short
// connection test to the node, before joining. Optional: joining works without it.
//
// The connection test talks to /api/precall/probe (server/precall.py): a WebSocket on which the
// page times a few pings (round trip), a download and an upload (achievable bitrate, TCP). The
// node caps bytes, time and how often a participant may run it.
//
// State for people and for tests, on document.body.dataset:
//   precall        idle | running | done | failed (no camera or microphone)
//   precallMicPeak the loudest microphone level heard (0..1, RMS)
//   speaker        untested | playing | asked | heard | not_heard
//   precallNet     idle | running | done | failed
//   precallRtt, precallDown, precallUp   ms, kbit/s, kbit/s (when done)
//   precallAdvice  good | fair | poor | failed

import { bilingual } from './bilingual.js';

const $ = (id) => document.getElementById(id);
const body = document.body;

const PINGS = 5;
const UPLOAD_BYTES = 1024 * 1024; // the node's cap (server/precall.py UPLOAD_BYTES)
const UPLOAD_CHUNK = 32 * 1024;
const UPLOAD_S = 3;
const TEST_TIMEOUT_MS = 20_000;

const check = {
  token: '',
  openCamera: null,
  cameraErrorText: null, // the call page's bilingual text for a getUserMedia error
  audio: null, // AudioContext: meter and tone
  meterTimer: 0,
  peak: 0,
  running: false,
};


// `openCamera` is the call page's: the stream opened here is the one the call then sends.
export function wirePrecall({ token, openCamera, cameraErrorText }) {
  check.token = token;
  check.openCamera = openCamera;
  check.cameraErrorText = cameraErrorText;
  body.dataset.precall = 'idle';
  body.dataset.speaker = 'untested';
  body.dataset.precallNet = 'idle';
  $('precall-start-btn').addEventListener('click', startCheck);
  $('precall-tone-btn').addEventListener('click', playTone);
  $('precall-heard-yes').addEventListener('click', () => heard(true));
  $('precall-heard-no').addEventListener('click', () => heard(false));
  $('precall-net-btn').addEventListener('click', testConnection);
}

async function startCheck() {
  if (check.running) return;
  check.running = true;
  $('precall-start-btn').disabled = true;
  body.dataset.precall = 'running';
  $('precall-body').hidden = false;
  let stream;
  try {
    stream = await check.openCamera();
  } catch (err) {
    $('precall-start-btn').disabled = false;
    $('precall-body').hidden = true;
    check.running = false;
    body.dataset.precall = 'failed';
    const [zh, en] = check.cameraErrorText(err);
    bilingual($('prejoin-error'), zh, en);
    $('prejoin-error').hidden = false;
    return;
  }
  const video = $('precall-video');
  video.srcObject = stream;
  video.play().catch(() => {});
  startMeter(stream);
  body.dataset.precall = 'done';
  testConnection();
}

// Stop what only the check uses (meter, tone); the camera stream stays for the call.
export function stopPrecall() {
  clearInterval(check.meterTimer);
  check.meterTimer = 0;
  if (check.audio) check.audio.close().catch(() => {});
  check.audio = null;
  $('precall-video').srcObject = null;
  check.running = false;
  $('precall-start-btn').disabled = false;
}

function audioContext() {
  if (!check.audio) check.audio = new AudioContext();
  check.audio.resume().catch(() => {});
  return check.audio;
}

function startMeter(stream) {
  if (!stream.getAudioTracks().length) return;
  const ctx = audioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const meter = $('precall-mic');
  clearInterval(check.meterTimer);
  check.meterTimer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    const rms = Math.sqrt(sum / samples.length);
    // Speech is ~0.02-0.2 RMS: scale so a normal voice fills most of the bar.
    meter.value = Math.min(1, rms * 4);
    if (rms > check.peak) {
      check.peak = rms;
      body.dataset.precallMicPeak = rms.toFixed(4);
    }
  }, 100);
}

function playTone() {
  const ctx = audioContext();
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.frequency.value = 440;
  gain.gain.setValueAtTime(0.0001, ctx.currentTime);
  gain.gain.exponentialRampToValueAtTime(0.25, ctx.currentTime + 0.05);
  gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 1.2);
  osc.connect(gain).connect(ctx.destination);
  osc.start();
  osc.stop(ctx.currentTime + 1.25);
  body.dataset.speaker = 'playing';
  bilingual($('precall-speaker-result'), '正在播放测试音…', 'Playing a test tone…');
  osc.onended = () => {
    body.dataset.speaker = 'asked';
    $('precall-heard').hidden = false;
    bilingual($('precall-speaker-result'), '您听到测试音了吗？', 'Did you hear the tone?');
    $('precall-heard-yes').focus();
  };
}

function heard(yes) {
  body.dataset.speaker = yes ? 'heard' : 'not_heard';
  $('precall-heard').hidden = true;
  if (yes) bilingual($('precall-speaker-result'), '扬声器正常。', 'The speaker works.');
  else
    bilingual(
      $('precall-speaker-result'),
      '请调高音量、检查耳机或蓝牙设备，再试一次。',
      'Turn the volume up, check headphones or Bluetooth, and try again.',
    );
}

// ------------------------------------------------------------------------------------------
// The connection test

function probeUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/api/precall/probe?token=${encodeURIComponent(check.token)}`;
}

// One WebSocket; `next(type)` resolves with the next JSON message of that type.
function openProbe() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(probeUrl());
    ws.binaryType = 'arraybuffer';
    const waiting = [];
    const probe = {
      ws,
      received: 0,
      next(type) {
        return new Promise((res, rej) => waiting.push({ type, res, rej }));
      },
    };
    ws.onopen = () => resolve(probe);
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') {
        probe.received += ev.data.byteLength;
        return;
      }
      const msg = JSON.parse(ev.data);
      if (msg.type === 'error') {
        // A refused message (PROTOCOL.md, connection test): fail the test now, not at its limit.
        const err = new Error(`probe refused: ${msg.code}`);
        for (const w of waiting.splice(0)) w.rej(err);
        return;
      }
      const i = waiting.findIndex((w) => w.type === msg.type);
      if (i >= 0) waiting.splice(i, 1)[0].res({ msg, at: performance.now() });
    };
    ws.onclose = (ev) => {
      const err = new Error(`probe closed (${ev.code})`);
      reject(err);
      for (const w of waiting.splice(0)) w.rej(err);
    };
  });
}

async function measure() {
  const probe = await openProbe();
  const { ws } = probe;
  try {
    const rtts = [];
    for (let n = 0; n < PINGS; n++) {
      const t0 = performance.now();
      ws.send(JSON.stringify({ type: 'ping', n }));
      const { at } = await probe.next('pong');
      rtts.push(at - t0);
    }
    rtts.sort((a, b) => a - b);
    const rtt = rtts[Math.floor(rtts.length / 2)];

    const d0 = performance.now();
    ws.send(JSON.stringify({ type: 'download' }));
    const { at: d1 } = await probe.next('downloaded');
    const down = (probe.received * 8) / Math.max(d1 - d0 - rtt, 20); // bits per ms = kbit/s

    const chunk = new Uint8Array(UPLOAD_CHUNK);
    crypto.getRandomValues(chunk); // random: nothing on the way can compress it (≤ 64 KiB)
    let sent = 0;
    const u0 = performance.now();
    while (sent + UPLOAD_CHUNK <= UPLOAD_BYTES && performance.now() - u0 < UPLOAD_S * 1000) {
      if (ws.bufferedAmount > 4 * UPLOAD_CHUNK) {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      ws.send(chunk);
      sent += UPLOAD_CHUNK;
    }
    ws.send(JSON.stringify({ type: 'uploaded' }));
    const { msg, at: u1 } = await probe.next('upload_result');
    const up = (msg.bytes * 8) / Math.max(u1 - u0 - rtt, 20);
    return { rtt: Math.round(rtt), down: Math.round(down), up: Math.round(up) };
  } finally {
    ws.close();
  }
}

// What the numbers mean for a video consultation (640x480 video needs ~0.5-1.5 Mbit/s each way).
export function advise({ rtt, down, up }) {
  if (rtt > 400 || down < 600 || up < 400) {
    const slow = {
      level: 'poor',
      tone: 'danger',
      zh: '网络较慢：请靠近路由器或改用有线网络，并暂停其他下载和视频。',
      en: 'Slow connection: move closer to the router or use a wired connection, and pause other downloads and videos.',
    };
    if (rtt > 400) {
      slow.zh += '网络延迟较高，对话可能有停顿。';
      slow.en += ' The delay is high: expect pauses in the conversation.';
    }
    return slow;
  }
  if (rtt > 150 || down < 1500 || up < 1000) {
    return {
      level: 'fair',
      tone: 'warn',
      zh: '网络一般：可以通话，画面有时可能模糊。如可能，请靠近路由器。',
      en: 'Fair connection: the call will work, the picture may blur at times. Move closer to the router if you can.',
    };
  }
  return { level: 'good', tone: 'ok', zh: '网络良好，可以加入问诊。', en: 'Good connection: you are ready to join.' };
}

function kbit(v) {
  return v >= 10_000 ? `${(v / 1000).toFixed(0)} Mbit/s` : v >= 1000 ? `${(v / 1000).toFixed(1)} Mbit/s` : `${v} kbit/s`;
}

async function testConnection() {
  if (body.dataset.precallNet === 'running') return;
  body.dataset.precallNet = 'running';
  $('precall-net-btn').disabled = true;
  const advice = $('precall-advice');
  advice.dataset.tone = '';
  bilingual(advice, '正在检测网络（约 10 秒）…', 'Testing the connection (about 10 s)…');
  let timer = 0;
  try {
    const result = await Promise.race([
      measure(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), TEST_TIMEOUT_MS);
      }),
    ]);
    $('precall-rtt').textContent = `${result.rtt} ms`;
    $('precall-down').textContent = kbit(result.down);
    $('precall-up').textContent = kbit(result.up);
    $('precall-net').hidden = false;
    Object.assign(body.dataset, {
      precallRtt: String(result.rtt),
      precallDown: String(result.down),
      precallUp: String(result.up),
    });
    const a = advise(result);
    advice.dataset.tone = a.tone;
    bilingual(advice, a.zh, a.en);
    body.dataset.precallAdvice = a.level;
    body.dataset.precallNet = 'done';
  } catch (err) {
    console.warn('connection test failed:', err.message);
    advice.dataset.tone = 'danger';
    bilingual(
      advice,
      '无法完成网络检测：请检查网络连接，或稍后再试。',
      'The connection test could not finish: check your network, or try again in a little while.',
    );
    body.dataset.precallAdvice = 'failed';
    body.dataset.precallNet = 'failed';
  } finally {
    clearTimeout(timer);
    $('precall-net-btn').disabled = false;
  }
}
