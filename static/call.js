// The call page of a teleconsultation (doctor or guardian).
//
// It speaks signaling protocol 1 (signaling/PROTOCOL.md): one WebSocket and one RTCPeerConnection
// with the node per participant; the node records and relays the media. The join link is
// /call#token=JWT: the token lives in the URL fragment so it never reaches an access log.
//
// State for people and for tests, with no test-only code paths: document.body.dataset
//   phase  prejoin | connecting | incall | reconnecting | left | final | error (page could not start)
//   state  the consultation state (scheduled ... aborted)
//   peer   the other participant: absent | connected | reconnecting | left
//   media  this browser's RTCPeerConnection connectionState (none before the first one)
//   role   doctor | guardian
//   consent  the guardian's informed consent: pending | given
//   referral  after a termination: loading | shown | none
//   feedback  sent, once the guardian's question or complaint is stored (issue 15)
//   access    feedback: the call link has expired, the page shows the guardian's questions and
//             complaints with the answers by the feedback token it kept (issue 15)
//   adverse   filed, once the doctor's adverse event is stored (issue 15)

import { bilingual } from './bilingual.js';
import { handleVerify } from './verify.js'; // issue 3: the identity check panel
import { handlePresence } from './presence.js'; // issue 4: the guardian-absent banner
import { stopPrecall, wirePrecall } from './precall.js'; // issue 11: the pre-call check
import { QualityMonitor, hideQuality, showPeerQuality } from './quality.js'; // issue 11
import { watchMediaPath } from './netwatch.js'; // issue 11: a dead media path, renegotiated
import { claimsOf, keptFeedbackToken, showFeedbackSection, wireFeedback } from './feedback.js'; // issue 15
import { showAdverseSection, wireAdverse } from './adverse.js'; // issue 15: adverse events

import {
  loadConsent,
  loadReferral,
  readTerminateForm,
  renderConsent,
  renderReferral,
  resetTerminateForm,
} from './clinical.js'; // issue 6: consent, termination and referral

const PROTOCOL = 1;
const REJOIN_GRACE_MS = 60_000; // the node's TC_REJOIN_GRACE default: after it we count as left
const JOIN_TIMEOUT_MS = 10_000; // socket opened but no `joined`: try again
const PING_EVERY_MS = 15_000; // keeps idle proxies from closing the socket
const SILENCE_LIMIT_MS = 45_000; // nothing heard (not even a pong) for this long: the socket is dead
const ANSWER_TIMEOUT_MS = 4_000; // issue 11: after a renegotiation, no answer means a dead socket
const FINAL_STATES = new Set(['ended', 'terminated', 'aborted']);

// Consultation states (server/ lifecycle) as badge text and colour.
const STATES = {
  scheduled: { zh: '已预约', en: 'Scheduled', tone: 'neutral' },
  waiting: { zh: '等待医生', en: 'Waiting for the doctor', tone: 'info' },
  verifying: { zh: '医生核验中', en: 'Verifying the doctor', tone: 'warn' },
  active: { zh: '问诊中', en: 'In consultation', tone: 'ok' },
  ended: { zh: '已结束', en: 'Ended', tone: 'neutral' },
  terminated: { zh: '已终止', en: 'Terminated', tone: 'danger' },
  aborted: { zh: '已中止', en: 'Aborted', tone: 'danger' },
};

const ROLES = {
  doctor: { zh: '医生', en: 'Doctor' },
  guardian: { zh: '患者监护人', en: 'Guardian' },
};

// How one side names the other.
const OTHER = {
  doctor: { zh: '患者方', en: 'The patient side' },
  guardian: { zh: '医生', en: 'The doctor' },
};

const PEER_STATUS = {
  absent: { zh: '尚未加入', en: 'has not joined yet', tone: 'neutral' },
  connected: { zh: '已连接', en: 'is connected', tone: 'ok' },
  reconnecting: { zh: '正在重新连接', en: 'is reconnecting', tone: 'warn' },
  left: { zh: '已离开', en: 'has left', tone: 'danger' },
};

// Chinese for the node's error codes (its `message` is English and shown as is).
const ERRORS = {
  bad_json: '消息格式错误',
  too_large: '消息过大',
  unknown_type: '不支持的操作',
  bad_field: '消息内容有误',
  not_joined: '尚未加入问诊',
  bad_protocol: '页面版本过旧，请刷新页面',
  forbidden: '您无权执行此操作',
  bad_state: '当前问诊状态不允许此操作',
  bad_sdp: '音视频连接协商失败',
  replaced: '您已在其他窗口或设备加入本次问诊',
};

// Professional titles (职称) of doctors, as the registry stores them.
const DOCTOR_TITLES = {
  resident: { zh: '住院医师', en: 'Resident' },
  attending: { zh: '主治医师', en: 'Attending physician' },
  associate_chief: { zh: '副主任医师', en: 'Associate chief physician' },
  chief: { zh: '主任医师', en: 'Chief physician' },
};

const VISIT_TYPES = {
  first: { zh: '初诊', en: 'First visit' },
  first_visit: { zh: '初诊', en: 'First visit' },
  initial: { zh: '初诊', en: 'First visit' },
  follow_up: { zh: '复诊', en: 'Follow-up' },
  followup: { zh: '复诊', en: 'Follow-up' },
  'follow-up': { zh: '复诊', en: 'Follow-up' },
  return: { zh: '复诊', en: 'Follow-up' },
};

const $ = (id) => document.getElementById(id);
const body = document.body;

const app = {
  token: '',
  me: null,
  role: '',
  state: '',
  peer: 'absent',
  phase: 'loading',
  localStream: null,
  conn: null, // the current Connection; events of older ones are ignored
  final: false,
  retry: null, // {since, attempt, timer} while reconnecting
  pending: { accept: false, end: false, terminate: false },
  consent: { given: false, version: '' }, // issue 6
  seq: 0,
  shownPhase: '', // the last screen shown, to scroll to the top only on a new screen
  shownInCall: false,
  quality: new QualityMonitor(), // issue 11: this page's reception, reported to the node
};

// ------------------------------------------------------------------------------------------
// Small DOM helpers


function setBadge(el, zh, en, tone) {
  el.hidden = false;
  el.dataset.tone = tone;
  bilingual(el.querySelector('.badge-label'), zh, en);
}

function show(id, visible) {
  $(id).hidden = !visible;
}

function clock(date = new Date()) {
  return date.toLocaleTimeString('zh-CN', { hour12: false });
}

// ------------------------------------------------------------------------------------------
// Page phase, consultation state, the other participant

function setPhase(phase) {
  app.phase = phase;
  body.dataset.phase = phase;
  const inCall = phase === 'connecting' || phase === 'incall' || phase === 'reconnecting';
  show('load-error', phase === 'error');
  show('prejoin', phase === 'prejoin');
  show('call', inCall);
  show('left-panel', phase === 'left');
  show('outcome', phase === 'final');
  show('reconnect-banner', phase === 'reconnecting');
  show('rec-badge', inCall);
  // While we are reconnecting we cannot know the other side's status: `joined` will tell.
  $('peer-badge').hidden = !(phase === 'connecting' || phase === 'incall');
  if (!inCall && $('end-confirm').open) $('end-confirm').close();
  if (!inCall && $('terminate-dialog').open) $('terminate-dialog').close();
  if (phase === 'final') showAftercare(); // issue 15: questions, complaints, adverse events
  $('consent-badge').hidden = !inCall;
  // Move focus to the heading of a panel that replaces the page, so screen readers read it.
  const heading = { left: 'left-title', final: 'outcome-title', error: 'load-error-title' }[phase];
  if (heading) focusHeading($(heading));
  // A new screen starts at the top (the join button may have been scrolled to on a phone).
  if (phase !== app.shownPhase && !(inCall && app.shownInCall)) window.scrollTo(0, 0);
  app.shownPhase = phase;
  app.shownInCall = inCall;
  updateControls();
  updateStage();
}

function focusHeading(el) {
  el.tabIndex = -1;
  el.focus({ preventScroll: false });
}

function setState(state) {
  if (!state) return;
  const changed = state !== app.state;
  app.state = state;
  body.dataset.state = state;
  const s = STATES[state] || { zh: state, en: state, tone: 'neutral' };
  setBadge($('state-badge'), s.zh, s.en, s.tone);
  if (changed) app.pending.accept = app.pending.end = app.pending.terminate = false;
  updateControls();
}

function setPeer(status, { announce = false } = {}) {
  if (!PEER_STATUS[status]) status = 'absent';
  const changed = status !== app.peer;
  app.peer = status;
  body.dataset.peer = status;
  const other = OTHER[app.role] || { zh: '对方', en: 'The other side' };
  const p = PEER_STATUS[status];
  setBadge($('peer-badge'), `${other.zh}${p.zh}`, `${other.en} ${p.en}`, p.tone);
  if (announce && changed) {
    const kind = status === 'connected' ? 'ok' : status === 'reconnecting' ? 'warn' : 'info';
    addNotice({ zh: `${other.zh}${p.zh}`, en: `${other.en} ${p.en}`, kind });
  }
  updateStage();
}

function setMedia(state) {
  body.dataset.media = state;
}

// The guardian's informed consent (issue 6): a badge on both pages, the doctor's cue to start.
function setConsent(given) {
  app.consent.given = !!given;
  body.dataset.consent = given ? 'given' : 'pending';
  const mine = app.role === 'guardian';
  if (given) setBadge($('consent-badge'), mine ? '已同意知情同意书' : '患者方已签署知情同意', mine ? 'Consent given' : 'Consent given', 'ok');
  else setBadge($('consent-badge'), mine ? '待同意知情同意书' : '待患者方签署知情同意', 'Consent pending', 'warn');
  $('consent-badge').hidden = !['connecting', 'incall', 'reconnecting'].includes(app.phase);
}

function updateControls() {
  const doctor = app.role === 'doctor';
  const inCall = app.phase === 'incall';
  const accept = $('accept-btn');
  const end = $('end-btn');
  accept.hidden = !doctor;
  end.hidden = !doctor;
  accept.disabled = !(
    doctor && inCall && (app.state === 'verifying' || app.state === 'waiting') && !app.pending.accept
  );
  end.disabled = !(doctor && inCall && app.state === 'active' && !app.pending.end);
  const terminate = $('terminate-btn');
  terminate.hidden = !doctor;
  terminate.disabled = !(
    doctor && inCall && ['waiting', 'verifying', 'active'].includes(app.state) && !app.pending.terminate
  );
  if (app.role === 'guardian' && app.phase === 'prejoin') {
    $('join-btn').disabled = !app.consent.given && !$('consent-check').checked;
  }
  $('accept-hint').hidden = !(doctor && (app.state === 'verifying' || app.state === 'waiting'));
  $('leave-btn').disabled = !['connecting', 'incall', 'reconnecting'].includes(app.phase);
  $('adverse-btn').hidden = !doctor; // issue 15: during the call; afterwards in the outcome panel
  $('feedback-btn').hidden = app.role !== 'guardian';
  $('mic-btn').disabled = !app.localStream;
}

// What covers the remote video until it shows a picture (or when the other side is away).
function updateStage() {
  const video = $('remote-video');
  const other = OTHER[app.role] || { zh: '对方', en: 'The other side' };
  const hasPicture = video.videoWidth > 0 && !!video.srcObject;
  let zh = '';
  let en = '';
  if (app.phase === 'connecting') [zh, en] = ['正在连接…', 'Connecting…'];
  else if (app.phase === 'reconnecting') [zh, en] = ['正在重新连接…', 'Reconnecting…'];
  else if (app.peer === 'absent') [zh, en] = [`等待${other.zh}加入…`, `Waiting for ${lower(other.en)} to join…`];
  else if (app.peer === 'reconnecting')
    [zh, en] = [`${other.zh}网络不稳定，正在重新连接…`, `${other.en} is reconnecting…`];
  else if (app.peer === 'left') [zh, en] = [`${other.zh}已离开`, `${other.en} has left`];
  else if (!hasPicture) [zh, en] = ['正在接收视频…', 'Receiving video…'];
  const ph = $('remote-placeholder');
  ph.hidden = !zh;
  // Over a live (or frozen last) picture the cover is see-through; over nothing it is solid.
  ph.classList.toggle('over-video', hasPicture);
  ph.querySelector('.spinner').hidden = app.peer === 'left' && app.phase === 'incall';
  $('remote-placeholder-zh').textContent = zh;
  $('remote-placeholder-en').textContent = en;
}

function lower(s) {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

// ------------------------------------------------------------------------------------------
// Notices, errors, toasts

function addNotice({ zh, en, kind = 'info', code = '' }) {
  $('notices-empty')?.remove();
  const li = document.createElement('li');
  li.className = `notice notice-${kind}`;
  if (code) li.dataset.code = code;
  const time = document.createElement('time');
  time.dateTime = new Date().toISOString();
  time.textContent = clock();
  const z = document.createElement('p');
  z.className = 'notice-zh';
  z.textContent = zh || '';
  const e = document.createElement('p');
  e.className = 'notice-en';
  e.lang = 'en';
  e.textContent = en || '';
  li.append(time, z, e);
  $('notices').prepend(li); // newest first: seen without scrolling
  toast({ zh, en, kind });
  if (kind === 'error') $('sr-alert').textContent = `${zh} ${en}`;
}

function toast({ zh, en, kind }) {
  const box = $('toasts');
  const t = document.createElement('div');
  t.className = `toast toast-${kind}`;
  const z = document.createElement('p');
  z.className = 'toast-zh';
  z.textContent = zh || '';
  const e = document.createElement('p');
  e.className = 'toast-en';
  e.lang = 'en';
  e.textContent = en || '';
  t.append(z, e);
  box.append(t);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => t.remove(), kind === 'error' ? 10_000 : 6_000);
}

// ------------------------------------------------------------------------------------------
// Start: the token, /api/me, the consultation header

function readToken() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  return params.get('token') || '';
}

function showLoadError({ zh, en, code = '' }) {
  $('load-error-zh').textContent = zh;
  $('load-error-en').textContent = en;
  $('load-error-code').textContent = code ? `错误代码 Error code: ${code}` : '';
  setBadge($('state-badge'), '无法打开', 'Unavailable', 'danger');
  setPhase('error');
}

async function loadMe() {
  let res;
  try {
    res = await fetch('/api/me', {
      headers: { Authorization: `Bearer ${app.token}` },
      cache: 'no-store',
    });
  } catch (err) {
    return { error: { zh: '无法连接服务器，请检查网络后刷新页面。', en: `Cannot reach the server: ${err.message}` } };
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    // not JSON: handled below by status
  }
  if (res.ok && data) return { me: data };
  const err = (data && data.error) || {};
  const zh =
    err.zh ||
    (res.status === 401
      ? '问诊链接无效或已过期。'
      : res.status === 403
        ? '您无权进入此问诊。'
        : `服务器错误（${res.status}）。`);
  return {
    error: {
      zh,
      en: err.message || `HTTP ${res.status} ${res.statusText}`,
      code: err.code || String(res.status),
      status: res.status,
    },
  };
}

function nameOf(v) {
  if (v == null || v === '') return '';
  if (typeof v !== 'object') return String(v);
  return [v.name, v.title || v.rank].filter(Boolean).join(' ') || String(v.id ?? '');
}

function formatTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

function renderHeader(me) {
  const c = me.consultation || {};
  const hospital = nameOf(c.hospital);
  if (hospital) {
    $('hospital-name').textContent = hospital;
    document.title = `视频问诊 · ${hospital} · Video consultation`;
  }
  const set = (id, value) => {
    $(id).textContent = value || '—';
  };
  set('meta-specialty', nameOf(c.specialty));
  set('meta-doctor', nameOf(c.doctor));
  if (c.doctor_title) {
    // The professional title on its own line under the name.
    const t = DOCTOR_TITLES[c.doctor_title] || { zh: c.doctor_title, en: '' };
    const sub = document.createElement('span');
    sub.className = 'sub';
    bilingual(sub, t.zh, t.en);
    $('meta-doctor').append(sub);
  }
  set('meta-patient', nameOf(c.patient));
  const visit = VISIT_TYPES[String(c.visit_type || '').toLowerCase()];
  if (visit) bilingual($('meta-visit'), visit.zh, visit.en);
  else set('meta-visit', nameOf(c.visit_type));
  set('meta-time', formatTime(c.scheduled_at));
  set('meta-id', c.id != null ? String(c.id) : '');
  const role = ROLES[me.role] || { zh: me.role, en: me.role };
  bilingual($('meta-role'), role.zh, role.en);
  show('consult-meta', true);
  show('prejoin-role-doctor', me.role === 'doctor');
  show('prejoin-role-guardian', me.role === 'guardian');
}

async function start() {
  wireButtons();
  app.token = readToken();
  if (!app.token) {
    showLoadError({
      zh: '链接不完整：缺少问诊凭证。',
      en: 'The link is incomplete: it has no consultation token.',
      code: 'no_token',
    });
    return;
  }
  const { me, error } = await loadMe();
  if (error) {
    if (error.status === 401 && showFeedbackOnly()) return;
    showLoadError(error);
    return;
  }
  app.me = me;
  app.role = me.role;
  body.dataset.role = me.role;
  renderHeader(me);
  if (me.role === 'guardian') wireFeedback(app.token, me.consultation.id); // issue 15
  if (me.role === 'doctor') wireAdverse(app.token, me.consultation.id);
  setPeer('absent');
  setState(me.consultation?.state);
  if (FINAL_STATES.has(app.state)) {
    finish(app.state, '');
    return;
  }
  if (app.role === 'guardian') await prepareConsent();
  else setConsent(false);
  wirePrecall({ token: app.token, openCamera, cameraErrorText });
  setPhase('prejoin');
}

// Issue 15: the call link has expired, but a guardian who wrote to the hospital kept a feedback
// token (static/feedback.js): their questions and complaints with the answers, and room for one
// more, until it expires too. Nothing else of the consultation is shown (the token opens nothing
// else).
function showFeedbackOnly() {
  const claims = claimsOf(app.token);
  if (!claims || claims.role !== 'guardian' || !claims.cid) return false;
  const token = keptFeedbackToken(claims.cid);
  if (!token) return false;
  app.role = 'guardian';
  body.dataset.role = 'guardian';
  body.dataset.access = 'feedback';
  wireFeedback(token, claims.cid);
  const until = new Date(claimsOf(token).exp * 1000).toLocaleDateString('zh-CN');
  $('outcome-zh').textContent = '本次问诊链接已过期';
  $('outcome-en').textContent = 'This consultation link has expired';
  $('outcome-detail-zh').textContent = `您的咨询与投诉及医院的回复可在此查看至 ${until}。`;
  $('outcome-detail-en').textContent = `Your questions and complaints, and the hospital's answers, stay readable here until ${until}.`;
  $('outcome-icon').className = 'panel-icon tone-neutral';
  setBadge($('state-badge'), '链接已过期', 'Link expired', 'neutral');
  setPhase('final');
  return true;
}

// The guardian reads the versioned consent text before joining and ticks the box; the page
// sends `consent` once joined (the node records it, the doctor's page shows it).
async function prepareConsent() {
  const consent = await loadConsent(app.token);
  if (!consent) {
    bilingual($('prejoin-error'), '无法载入知情同意书，请刷新页面。', 'Could not load the consent text: reload the page.');
    show('prejoin-error', true);
    return;
  }
  app.consent.version = renderConsent(consent);
  setConsent(consent.given);
  if (consent.given) {
    $('consent-check').checked = true;
    $('consent-check').disabled = true;
  }
}

// ------------------------------------------------------------------------------------------
// Camera and microphone

async function openCamera() {
  if (app.localStream) return app.localStream;
  if (!navigator.mediaDevices?.getUserMedia) {
    throw Object.assign(new Error('getUserMedia is not available (the page needs HTTPS)'), {
      name: 'NotSupportedError',
    });
  }
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: 640, height: 480 },
  });
  app.localStream = stream;
  const local = $('local-video');
  local.muted = true; // never play our own microphone back
  local.srcObject = stream;
  local.play().catch(() => {});
  setMicMuted(false);
  return stream;
}

function stopCamera() {
  if (!app.localStream) return;
  for (const track of app.localStream.getTracks()) track.stop();
  app.localStream = null;
  $('local-video').srcObject = null;
  updateControls();
}

function cameraErrorText(err) {
  switch (err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return ['未获得摄像头或麦克风权限。请在浏览器设置中允许后重试。', 'Camera or microphone permission was denied. Allow it in the browser settings and try again.'];
    case 'NotFoundError':
    case 'OverconstrainedError':
      return ['未找到可用的摄像头或麦克风。', 'No usable camera or microphone was found.'];
    case 'NotReadableError':
      return ['摄像头或麦克风正被其他程序占用。', 'The camera or microphone is in use by another program.'];
    default:
      return ['无法打开摄像头或麦克风。', `Cannot open the camera or microphone: ${err.message || err.name}`];
  }
}

function setMicMuted(muted) {
  for (const t of app.localStream?.getAudioTracks() || []) t.enabled = !muted;
  const btn = $('mic-btn');
  btn.setAttribute('aria-pressed', String(muted));
  btn.classList.toggle('is-muted', muted);
  $('mic-zh').textContent = muted ? '取消静音' : '静音';
  $('mic-en').textContent = muted ? 'Unmute' : 'Mute';
}

// ------------------------------------------------------------------------------------------
// One connection: a WebSocket, then (after `joined`) one RTCPeerConnection

// Several nodes (issue 7): the node hosting the consultation may differ from the one that served
// the page (`redirect`), and after a node dies any live node can take over (`joined.nodes`).
function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const host = app.nodeHost || location.host;
  return `${scheme}://${host}/ws?token=${encodeURIComponent(app.token)}`;
}

function send(conn, msg) {
  if (conn.ws.readyState !== WebSocket.OPEN) return false;
  const id = ++app.seq;
  conn.sent.set(id, msg.type);
  if (conn.sent.size > 50) conn.sent.delete(conn.sent.keys().next().value);
  conn.ws.send(JSON.stringify({ ...msg, id }));
  return id;
}

// This browser's downlink as far as it was measured before any media (kbit/s, or null): the
// pre-call test's download when it ran, else how fast this page's own files arrived (Resource
// Timing; bytes over the time spent receiving bodies, overlapping downloads counted once, so a
// request's round trip and the server's think time are left out). The node starts the video it
// sends us from it (signaling/bandwidth.py), so a slow link's first key frame does not overflow it.
const MIN_TIMED_BYTES = 32 * 1024; // less than this, cached or compressed to nothing: not timed

function downlinkKbps() {
  const precall = Number(document.body.dataset.precallDown);
  if (precall > 0) return Math.min(Math.round(precall), 10_000_000);
  const spans = [];
  let bytes = 0;
  for (const e of performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))) {
    if (!(e.encodedBodySize > 0 && e.transferSize > 0 && e.responseEnd > e.responseStart)) continue; // cached, or opaque
    bytes += e.encodedBodySize;
    spans.push([e.responseStart, e.responseEnd]);
  }
  if (bytes < MIN_TIMED_BYTES) return null;
  spans.sort((a, b) => a[0] - b[0]);
  let ms = 0;
  let [from, to] = spans[0];
  for (const [s, e] of spans.slice(1)) {
    if (s > to) {
      ms += to - from;
      [from, to] = [s, e];
    } else to = Math.max(to, e);
  }
  ms += to - from;
  // Under 1 ms in all (a local or cached load): the link is not what limits, report nothing.
  return ms >= 1 ? Math.min(Math.round((bytes * 8) / ms), 10_000_000) : null;
}

function connect() {
  const conn = {
    ws: new WebSocket(wsUrl()),
    pc: null,
    opened: false,
    joined: false,
    answered: false,
    closedByUs: false,
    pendingCandidates: [],
    sentEndOfCandidates: false,
    sent: new Map(), // message id -> type, to tell what an `error` (re: id) refers to
    lastHeard: Date.now(),
    timers: [],
    queue: Promise.resolve(), // messages are handled one at a time, in order
  };
  app.conn = conn;
  const { ws } = conn;
  ws.onopen = () => {
    if (app.conn !== conn) return;
    conn.opened = true;
    const downlink = downlinkKbps();
    send(conn, { type: 'join', protocol: PROTOCOL, ...(downlink ? { downlink_kbps: downlink } : {}) });
  };
  ws.onmessage = (ev) => {
    if (app.conn !== conn) return;
    conn.lastHeard = Date.now();
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      console.warn('ignored a frame that is not JSON');
      return;
    }
    conn.queue = conn.queue
      .then(() => (app.conn === conn ? handleMessage(conn, msg) : undefined))
      .catch((err) => {
        console.error('handling', msg.type, err);
        addNotice({ zh: '页面处理消息时出错', en: `${msg.type}: ${err.message}`, kind: 'error' });
      });
  };
  ws.onerror = () => {}; // a close event always follows
  ws.onclose = (ev) => onSocketClose(conn, ev);
  // No `joined` in time (a stuck proxy, a node busy starting): start over.
  conn.timers.push(
    setTimeout(() => {
      if (app.conn === conn && !conn.joined) startReconnect('no joined within the time limit');
    }, JOIN_TIMEOUT_MS),
  );
  conn.timers.push(
    setInterval(() => {
      if (app.conn !== conn) return;
      if (Date.now() - conn.lastHeard > SILENCE_LIMIT_MS) startReconnect('the socket went silent');
      else send(conn, { type: 'ping' });
    }, PING_EVERY_MS),
  );
  return conn;
}

// Close a connection on purpose: its close event must not start a reconnect.
function teardown(conn) {
  if (!conn) return;
  conn.closedByUs = true;
  closePeer(conn);
  hideQuality();
  for (const t of conn.timers) {
    clearTimeout(t);
    clearInterval(t);
  }
  if (conn.ws.readyState === WebSocket.OPEN || conn.ws.readyState === WebSocket.CONNECTING) {
    conn.ws.close(1000, 'client closed');
  }
  if (app.conn === conn) app.conn = null;
}

async function handleMessage(conn, msg) {
  switch (msg.type) {
    case 'redirect': // the socket closes with 4002 next; join again there
      app.nodeHost = new URL(msg.url).host;
      break;
    case 'joined':
      app.nodes = (msg.nodes || []).map((url) => new URL(url).host);
      return onJoined(conn, msg);
    case 'answer':
      return onAnswer(conn, msg);
    case 'state':
      setState(msg.state);
      if (FINAL_STATES.has(msg.state)) finish(msg.state, msg.reason);
      return;
    case 'participant':
      if (msg.role && msg.role === app.role) return; // about ourselves (another tab): not the peer
      setPeer(msg.status, { announce: true });
      return;
    case 'notice':
      addNotice({ zh: msg.zh, en: msg.en, kind: 'info', code: msg.code });
      if (msg.code === 'ice_failed') renegotiate(conn, 'the node lost our media'); // issue 11
      return;
    case 'quality': // issue 11: the other side's reception
      if (msg.role !== app.role) showPeerQuality(msg, OTHER[app.role] || { zh: '对方', en: 'The other side' });
      return;
    case 'error':
      return onError(conn, msg);
    case 'pong':
      return;
    case 'consent': // issue 6
      if (msg.given && !app.consent.given) {
        addNotice({ zh: '患者方已签署知情同意书', en: `Informed consent given (version ${msg.version})`, kind: 'ok' });
      }
      setConsent(msg.given);
      return;
    case 'verify': // issue 3
      return handleVerify(msg);
    case 'presence': // issue 4
      return handlePresence(msg);
    default:
      console.debug('ignored message type', msg.type); // a newer node: unknown types are fine
  }
}

async function onJoined(conn, msg) {
  conn.joined = true;
  const wasReconnecting = !!app.retry;
  stopRetrying();
  if (msg.you?.role) app.role = msg.you.role;
  const others = (msg.participants || [])
    .map((p) => (typeof p === 'string' ? { role: p, status: 'connected' } : p))
    .filter((p) => p && p.role !== app.role);
  setPeer(others.length ? others[0].status || 'connected' : 'absent');
  setState(msg.consultation?.state);
  if (FINAL_STATES.has(app.state)) {
    finish(app.state, '');
    return;
  }
  setPhase('incall');
  setConsent(msg.consent?.given);
  if (app.role === 'guardian' && !app.consent.given && $('consent-check').checked && msg.consent?.version) {
    send(conn, { type: 'consent', version: msg.consent.version });
  }
  if (wasReconnecting) addNotice({ zh: '已重新连接', en: 'Reconnected', kind: 'ok' });
  await startPeer(conn, msg.iceServers || []);
}

async function startPeer(conn, iceServers) {
  // Only the ICE servers the node names: an empty list means none (no public STUN server).
  const pc = new RTCPeerConnection({ iceServers });
  conn.pc = pc;
  conn.iceServers = iceServers;
  setMedia(pc.connectionState);
  const stream = app.localStream;
  // audio then video, both sendrecv: the node sends the other side's media on them.
  for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
  for (const track of stream.getVideoTracks()) pc.addTrack(track, stream);

  // All remote tracks go into one stream shown by the big video; a new pc gets a new stream.
  const remote = new MediaStream();
  const video = $('remote-video');
  video.srcObject = remote;
  pc.ontrack = (ev) => {
    if (app.conn !== conn) return;
    remote.addTrack(ev.track);
    ev.track.onunmute = updateStage;
    playRemote();
  };
  pc.onicecandidate = (ev) => {
    const c = ev.candidate;
    if (c && !c.candidate) return; // Chromium's per-generation end marker; `null` follows
    if (!c) {
      if (conn.sentEndOfCandidates) return;
      conn.sentEndOfCandidates = true;
    }
    const payload = c ? { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex } : null;
    // Held back until the answer is set, so the node never sees a candidate before its answer.
    if (conn.answered) send(conn, { type: 'candidate', candidate: payload });
    else conn.pendingCandidates.push(payload);
  };
  pc.onconnectionstatechange = () => {
    if (app.conn === conn && conn.pc === pc) setMedia(pc.connectionState);
  };
  // A failed or long-disconnected path (a new address, Wi-Fi to 4G): a new peer connection.
  conn.stopWatch = watchMediaPath(pc, (reason) => {
    if (app.conn === conn && conn.pc === pc && !app.final) renegotiate(conn, reason);
  });
  app.quality.start(pc, (msg) => send(conn, msg));

  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  if (app.conn !== conn || conn.pc !== pc) return;
  conn.offerId = send(conn, { type: 'offer', sdp: pc.localDescription.sdp });
}

function closePeer(conn) {
  conn.stopWatch?.();
  app.quality.stop();
  if (conn.pc) {
    conn.pc.ontrack = conn.pc.onicecandidate = conn.pc.onconnectionstatechange = null;
    conn.pc.close();
    conn.pc = null;
    setMedia('closed');
  }
}

// Issue 11: the media path died while the socket may still be up. aiortc has no ICE restart:
// a new RTCPeerConnection and offer on the same socket (the node logs the gap); a dead socket
// too means the usual rejoin.
function renegotiate(conn, reason) {
  if (app.conn !== conn || app.final) return;
  if (!conn.joined || conn.ws.readyState !== WebSocket.OPEN) {
    startReconnect(reason);
    return;
  }
  console.info('renegotiating:', reason);
  addNotice({ zh: '网络变化，正在恢复音视频…', en: 'The network changed: restoring picture and sound…', kind: 'warn', code: 'renegotiating' });
  closePeer(conn);
  conn.answered = false;
  conn.pendingCandidates = [];
  conn.sentEndOfCandidates = false;
  startPeer(conn, conn.iceServers || []).catch((err) => startReconnect(`new peer connection failed: ${err.message}`));
  // A socket bound to an address that is gone looks open but carries nothing: no answer in
  // time means it died too, so rejoin on a new one.
  conn.timers.push(
    setTimeout(() => {
      if (app.conn === conn && !conn.answered && !app.final) startReconnect('no answer to the new offer');
    }, ANSWER_TIMEOUT_MS),
  );
}

async function onAnswer(conn, msg) {
  // An answer to an earlier offer (before a renegotiation) is not for this peer connection.
  if (!conn.pc || conn.answered || (msg.re !== undefined && msg.re !== conn.offerId)) return;
  try {
    await conn.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
  } catch (err) {
    addNotice({ zh: '音视频连接协商失败', en: `Could not apply the answer: ${err.message}`, kind: 'error' });
    startReconnect('bad answer');
    return;
  }
  conn.answered = true;
  for (const candidate of conn.pendingCandidates.splice(0)) send(conn, { type: 'candidate', candidate });
}

function onError(conn, msg) {
  const about = conn.sent.get(msg.re);
  addNotice({
    zh: ERRORS[msg.code] || '操作未成功',
    en: msg.message || msg.code || 'error',
    kind: 'error',
    code: msg.code,
  });
  if (about === 'accept') app.pending.accept = false;
  if (about === 'end') app.pending.end = false;
  if (about === 'terminate') app.pending.terminate = false;
  updateControls();
  if (!conn.joined && msg.code === 'unavailable') {
    startReconnect('the node cannot host the consultation yet');
    return;
  }
  // A refused join cannot be fixed by retrying (wrong protocol, consultation over, not allowed).
  if (!conn.joined && (about === 'join' || ['bad_protocol', 'bad_state', 'forbidden'].includes(msg.code))) {
    stopRetrying();
    teardown(conn);
    stopCamera();
    showLeft('无法加入问诊', 'Could not join the consultation', ERRORS[msg.code] || '加入被拒绝。', msg.message || msg.code);
  }
}

async function onSocketClose(conn, ev) {
  if (app.conn !== conn || conn.closedByUs || app.final) return;
  conn.closedByUs = true;
  // Messages still queued (a final `state` behind an offer being made) come first.
  await conn.queue;
  if (app.conn !== conn || app.final) return;
  if (ev.code === 4002) {
    teardown(conn);
    connect();
    return;
  }
  if (ev.code === 4001) {
    // `replaced`: the same person joined from another tab or device; that one wins.
    teardown(conn);
    stopRetrying();
    stopCamera();
    showLeft(
      '已在其他窗口加入',
      'Joined from another window',
      `${ERRORS.replaced}，此窗口已断开。`,
      'This window was disconnected because you joined from another window or device.',
    );
    return;
  }
  if (!conn.opened) {
    // The upgrade was refused, or the node is down. A refused token will not get better.
    const { error } = await loadMe();
    if (app.conn !== conn || app.final) return;
    if (error && (error.status === 401 || error.status === 403)) {
      teardown(conn);
      stopRetrying();
      stopCamera();
      showLoadError(error);
      return;
    }
  }
  startReconnect(`socket closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`);
}

// ------------------------------------------------------------------------------------------
// Reconnect: new WebSocket, `join`, a NEW RTCPeerConnection and offer; backoff within the grace

function startReconnect(reason) {
  if (app.final) return;
  console.info('reconnecting:', reason);
  teardown(app.conn);
  if (!app.retry) {
    app.retry = { since: Date.now(), attempt: 0, timer: 0 };
    addNotice({ zh: '网络中断，正在重新连接…', en: 'Connection lost, reconnecting…', kind: 'warn' });
  }
  setPhase('reconnecting');
  setMedia('none');
  const left = REJOIN_GRACE_MS - (Date.now() - app.retry.since);
  if (left <= 0) {
    giveUp();
    return;
  }
  // 0.5 s, 1 s, 2 s, 4 s, then every 8 s, with jitter so that both sides do not retry in step.
  const delay = Math.min(500 * 2 ** app.retry.attempt, 8_000) * (0.8 + Math.random() * 0.4);
  app.retry.attempt += 1;
  clearTimeout(app.retry.timer);
  app.retry.timer = setTimeout(() => {
    // Try the live nodes in turn: the one we were on may be the one that died.
    const nodes = app.nodes || [];
    if (nodes.length) app.nodeHost = nodes[app.retry.attempt % nodes.length];
    if (app.phase === 'reconnecting') connect();
  }, Math.min(delay, left));
}

function stopRetrying() {
  if (app.retry) clearTimeout(app.retry.timer);
  app.retry = null;
}

function giveUp() {
  stopRetrying();
  teardown(app.conn);
  stopCamera();
  showLeft(
    '连接已断开',
    'Disconnected',
    '网络中断时间过长，已退出问诊。如问诊仍在进行，可重新加入。',
    'The connection was lost for too long. If the consultation is still open, you can rejoin.',
  );
}

// ------------------------------------------------------------------------------------------
// Leaving and the end

function showLeft(zh, en, detailZh, detailEn) {
  $('left-zh').textContent = zh;
  $('left-en').textContent = en;
  $('left-detail-zh').textContent = detailZh;
  $('left-detail-en').textContent = detailEn;
  setPhase('left');
}

function leave() {
  const conn = app.conn;
  if (conn) {
    send(conn, { type: 'leave' }); // sent before the close frame: a socket flushes in order
    teardown(conn);
  }
  stopRetrying();
  stopCamera();
  showLeft('您已离开问诊', 'You have left the consultation', '问诊仍在进行中，您可以重新加入。', 'The consultation is still open: you can rejoin.');
}

const OUTCOMES = {
  ended: {
    tone: 'ok',
    zh: '问诊已结束',
    en: 'The consultation has ended',
    detailZh: '感谢您的配合。诊疗记录与处方（如有）可在医院应用中查看。',
    detailEn: 'Thank you. The record and any prescription are available in the hospital app.',
  },
  terminated: {
    tone: 'danger',
    zh: '问诊已终止',
    en: 'The consultation was terminated',
    detailZh: '本次情况不适合继续线上问诊，请按医生建议尽快前往线下医院就诊。',
    detailEn: 'Online care is not suitable for this case: please visit a hospital in person as the doctor advises.',
  },
  aborted: {
    tone: 'warn',
    zh: '问诊已中止',
    en: 'The consultation was aborted',
    detailZh: '问诊未能完成（例如连接中断时间过长）。请联系医院重新预约。',
    detailEn: 'The consultation could not be completed (for example, the connection was lost for too long). Please contact the hospital to book again.',
  },
};

// Reasons the node gives with a final state; anything else is shown as it comes.
const REASONS = {
  completed: '诊疗完成 Completed',
  'every participant left': '双方均已离开 Every participant left',
};

function finish(state, reason) {
  app.final = true;
  stopRetrying();
  teardown(app.conn);
  stopCamera();
  $('remote-video').srcObject = null;
  const o = OUTCOMES[state] || OUTCOMES.ended;
  $('outcome-zh').textContent = o.zh;
  $('outcome-en').textContent = o.en;
  $('outcome-detail-zh').textContent = o.detailZh;
  $('outcome-detail-en').textContent = o.detailEn;
  $('outcome-icon').className = `panel-icon tone-${o.tone}`;
  const r = $('outcome-reason');
  r.hidden = !reason;
  r.textContent = reason ? `原因 Reason: ${REASONS[reason] || reason}` : '';
  setPhase('final');
  if (state === 'terminated') showReferral();
}

// After the end (and on the referral, opened again by the same link): the guardian's questions
// and complaints with the answers, the doctor's adverse events with their handling (issue 15).
function showAftercare() {
  if (app.role === 'guardian') showFeedbackSection();
  if (app.role === 'doctor') showAdverseSection();
}

// The referral of a terminated consultation, also when the page is opened after the end.
async function showReferral() {
  body.dataset.referral = 'loading';
  const cid = app.me?.consultation?.id;
  const data = cid ? await loadReferral(app.token, cid) : null;
  if (!data) {
    body.dataset.referral = 'none';
    return;
  }
  $('outcome-reason').hidden = true; // the referral states the reason in full
  renderReferral($('referral'), data);
  body.dataset.referral = 'shown';
}

// ------------------------------------------------------------------------------------------
// Remote playback

function playRemote() {
  const video = $('remote-video');
  video.play().then(
    () => show('unmute-btn', false),
    (err) => {
      // Autoplay with sound needs a user gesture; the join click normally counts as one.
      if (err.name === 'NotAllowedError') show('unmute-btn', true);
    },
  );
}

// ------------------------------------------------------------------------------------------
// Buttons

async function join() {
  const fromLeft = app.phase === 'left';
  $('join-btn').disabled = $('rejoin-btn').disabled = true;
  show('prejoin-error', false);
  try {
    await openCamera();
  } catch (err) {
    console.error('getUserMedia failed', err.name, err.message);
    const [zh, en] = cameraErrorText(err);
    if (fromLeft) {
      showLeft('无法打开摄像头', 'Cannot open the camera', zh, en);
    } else {
      bilingual($('prejoin-error'), zh, en);
      show('prejoin-error', true);
    }
    return;
  } finally {
    $('join-btn').disabled = $('rejoin-btn').disabled = false;
  }
  stopRetrying();
  stopPrecall();
  setPeer('absent');
  setPhase('connecting');
  connect();
}

function wireButtons() {
  $('join-btn').addEventListener('click', join);
  $('rejoin-btn').addEventListener('click', join);
  $('leave-btn').addEventListener('click', leave);
  $('accept-btn').addEventListener('click', () => {
    if (app.conn && send(app.conn, { type: 'accept' })) {
      app.pending.accept = true; // until the state changes or the node refuses
      updateControls();
    }
  });
  const dialog = $('end-confirm');
  $('end-btn').addEventListener('click', () => {
    dialog.showModal();
    $('end-cancel-btn').focus(); // the safe choice first
  });
  $('end-cancel-btn').addEventListener('click', () => dialog.close());
  $('end-confirm-btn').addEventListener('click', () => {
    dialog.close();
    if (app.conn && send(app.conn, { type: 'end', reason: 'completed' })) {
      app.pending.end = true;
      updateControls();
    }
  });
  wireTerminate();
  $('consent-check').addEventListener('change', updateControls);
  $('mic-btn').addEventListener('click', () => {
    setMicMuted($('mic-btn').getAttribute('aria-pressed') !== 'true');
  });
  $('unmute-btn').addEventListener('click', playRemote);
  const video = $('remote-video');
  for (const ev of ['loadeddata', 'resize', 'emptied', 'playing']) video.addEventListener(ev, updateStage);
}

// The doctor's termination dialog: reason, referral target, urgency, note (issue 6).
function wireTerminate() {
  const dialog = $('terminate-dialog');
  $('terminate-btn').addEventListener('click', () => {
    resetTerminateForm();
    dialog.showModal();
    $('term-reason').focus();
  });
  $('terminate-cancel-btn').addEventListener('click', () => dialog.close());
  $('term-reason').addEventListener('change', () => {
    $('term-text-field').hidden = $('term-reason').value !== 'other';
  });
  $('terminate-form').addEventListener('input', () => show('terminate-error', false));
  $('terminate-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const { msg, error, focus } = readTerminateForm();
    if (error) {
      bilingual($('terminate-error'), error.zh, error.en);
      show('terminate-error', true);
      $(focus)?.focus();
      return;
    }
    if (app.conn && send(app.conn, msg)) {
      app.pending.terminate = true;
      dialog.close();
      updateControls();
    }
  });
}

start();
