// The auditor's replay page: /replay#token=JWT (auditor or admin). The token stays in the URL
// fragment (never in an access log) and goes out as `Authorization: Bearer`. <video> elements
// cannot send headers, so each segment is played from a short-lived URL the API hands out
// (and logs). Both participants play on one clock: the recording's epoch, in seconds.

const ROLES = ['doctor', 'guardian'];
const KINDS = {
  'state': ['状态变更', 'State change'],
  'participant.joined': ['加入', 'Joined'],
  'participant.rejoined': ['重新加入', 'Rejoined'],
  'participant.lost': ['连接中断', 'Connection lost'],
  'participant.left': ['离开', 'Left'],
  'consent.accepted': ['知情同意', 'Consent given'],
  'recording.started': ['开始录像', 'Recording started'],
  'recording.segment': ['录像片段', 'Segment stored'],
  'recording.recovered': ['片段已修复', 'Segment recovered'],
  'recording.lost': ['片段丢失', 'Segment lost'],
  'recording.gap': ['录像中断', 'Gap in recording'],
  'recording.failed': ['录像失败', 'Recording failed'],
  'recording.interrupted': ['录像意外中断', 'Recording interrupted'],
  'recording.stopped': ['录像结束', 'Recording stopped'],
  'recording.opened': ['打开录像', 'Recording opened'],
  'recording.play': ['播放', 'Playback'],
  'recording.download': ['下载', 'Download'],
  'recording.access': ['访问片段', 'Segment accessed'],
  'recording.verified': ['完整性校验', 'Integrity verified'],
  'recording.purged': ['到期删除', 'Purged'],
  'recording.purge_refused': ['存储拒绝删除（仍在保留期）', 'Purge refused by the store (still retained)'],
  'recording.hold.set': ['法律保全', 'Legal hold set'],
  'recording.hold.lifted': ['解除保全', 'Legal hold lifted'],
};
const BAD = /failed|lost|gap|interrupted|terminated|refused/;
const WARN = /guardian|identity|verify|hold|purged/;

const app = { token: '', data: null, t: 0, playing: false, lastTick: 0, total: 0,
  loaded: { doctor: null, guardian: null }, urls: new Map() };
const $ = (id) => document.getElementById(id);

function readToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  return params.get('token') || '';
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options,
    headers: { Authorization: `Bearer ${app.token}`, ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const e = body.error || {};
    throw new Error(`${response.status} ${e.code || ''}: ${e.message || response.statusText}`);
  }
  return body;
}

function showError(err) {
  const box = $('error');
  box.textContent = `出错了 Error — ${err.message || err}`;
  box.hidden = false;
}

function fmt(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'onclick') node.addEventListener('click', v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function bilingual(zh, en) {
  return [zh, ' ', el('span', { lang: 'en' }, en)];
}

function setView(view) {
  document.body.dataset.view = view;
  $('search-view').hidden = view !== 'search';
  $('detail-view').hidden = view !== 'detail';
}

// -- search ------------------------------------------------------------------------------------

async function search(event) {
  if (event) event.preventDefault();
  const params = new URLSearchParams();
  for (const [k, v] of new FormData($('search-form')).entries()) if (v) params.set(k, v);
  const { consultations } = await api(`/api/recordings?${params}`);
  const rows = $('results');
  rows.replaceChildren();
  for (const c of consultations) {
    const open = el('button', { class: 'btn', type: 'button', 'data-cid': c.id,
      onclick: () => openConsultation(c.id).catch(showError) }, ...bilingual('打开', 'Open'));
    if (!c.recording) open.disabled = true;
    rows.append(el('tr', {},
      el('td', {}, new Date(c.scheduled_at).toLocaleString('zh-CN')),
      el('td', {}, c.hospital || ''), el('td', {}, c.doctor || ''), el('td', {}, c.state),
      el('td', {}, c.end_reason || ''), el('td', {}, c.recording || '—'), el('td', {}, open)));
  }
  $('no-results').hidden = consultations.length > 0;
}

// -- one consultation --------------------------------------------------------------------------

async function openConsultation(cid) {
  pause();
  app.data = await api(`/api/recordings/${encodeURIComponent(cid)}`);
  app.urls.clear();
  app.loaded = { doctor: null, guardian: null };
  const { consultation: c, recording: r, segments } = app.data;
  app.playable = segments.filter((s) => s.state !== 'purged');
  app.total = Math.max(0, ...app.playable.map((s) => (s.t_start_ms + s.duration_ms) / 1000));
  const fact = (zh, en, value) => el('div', {}, el('b', {}, ...bilingual(zh, en)), value || '—');
  $('facts').replaceChildren(
    fact('医院', 'Hospital', c.hospital), fact('医生', 'Doctor', c.doctor),
    fact('专科', 'Specialty', c.specialty), fact('状态', 'State', c.state),
    fact('原因', 'Reason', c.end_reason),
    fact('录像', 'Recording', r ? r.status : 'none'),
    fact('保存至', 'Retain until', r && r.retain_until ? r.retain_until.slice(0, 10) : ''),
    fact('法律保全', 'Legal hold', r && r.legal_hold ? `是 yes — ${r.hold_reason}` : '否 no'));
  $('verify-result').hidden = true;
  $('seek').max = String(app.total);
  drawSegments();
  drawEvents();
  setView('detail');
  history.replaceState(null, '', `/replay?c=${encodeURIComponent(cid)}${location.hash}`);
  await seek(0);
}

function drawSegments() {
  const bar = $('gaps');
  bar.replaceChildren();
  if (!app.total) return;
  const doctor = app.playable.filter((s) => s.role === 'doctor');
  for (const s of doctor) {
    bar.append(el('span', { style: `left:${(s.t_start_ms / 10) / app.total}%;` +
      `width:${(s.duration_ms / 10) / app.total}%`, title: `doctor #${s.seq}` }));
  }
}

function drawEvents() {
  const list = $('events');
  list.replaceChildren();
  for (const e of app.data.events) {
    const [zh, en] = KINDS[e.kind] || [e.kind, ''];
    const at = Math.max(0, (e.t_ms ?? 0) / 1000);
    let detail = '';
    if (e.kind === 'state') detail = `${e.data.from} → ${e.data.to}${e.data.reason ? ` (${e.data.reason})` : ''}`;
    else if (e.data.role) detail = `${e.data.role}${e.data.seq !== undefined ? ` #${e.data.seq}` : ''}`;
    else if (e.data.reason) detail = e.data.reason;
    const tone = BAD.test(e.kind + detail) ? 'bad' : (WARN.test(e.kind) ? 'warn' : '');
    list.append(el('li', { dataset: { t: String(at), tone, kind: e.kind } },
      el('button', { type: 'button', onclick: () => seek(at).catch(showError) },
        el('span', { class: 't' }, e.t_ms === null ? '' : (e.t_ms < 0 ? '录像前' : fmt(at))),
        el('span', {}, el('span', { class: 'k' }, zh, ' ', el('span', { lang: 'en' }, en)),
          detail ? ` ${detail}` : '', el('span', { class: 'actor' }, `${e.actor} · ${new Date(e.at).toLocaleTimeString('zh-CN')}`)))));
  }
}

// -- playback: one clock, two videos -----------------------------------------------------------

function segmentAt(role, t) {
  return app.playable.find((s) => s.role === role && t >= s.t_start_ms / 1000 &&
    t < (s.t_start_ms + s.duration_ms) / 1000) || null;
}

async function urlFor(seg, purpose = 'play') {
  const key = `${seg.id}:${purpose}`;
  if (purpose === 'play' && app.urls.has(key)) return app.urls.get(key);
  const cid = app.data.consultation.id;
  const { url } = await api(`/api/recordings/${cid}/segments/${seg.id}/access?purpose=${purpose}`,
    { method: 'POST' });
  if (purpose === 'play') app.urls.set(key, url);
  return url;
}

async function place(role) {
  const video = $(`video-${role}`);
  const seg = segmentAt(role, app.t);
  $(`nomedia-${role}`).hidden = !!seg;
  if (!seg) {
    if (!video.paused) video.pause();
    return;
  }
  const local = app.t - seg.t_start_ms / 1000;
  if (app.loaded[role] !== seg.id) {
    app.loaded[role] = seg.id;
    video.dataset.start = String(seg.t_start_ms / 1000); // where its time 0 sits on the clock
    video.src = await urlFor(seg);
    video.currentTime = local;
  } else if (Math.abs(video.currentTime - local) > 0.35) {
    video.currentTime = local;
  }
  if (app.playing && video.paused) video.play().catch(() => {});
  if (!app.playing && !video.paused) video.pause();
}

async function seek(t) {
  app.t = Math.min(Math.max(0, t), app.total);
  await Promise.all(ROLES.map(place));
  render();
}

function render() {
  $('seek').value = String(app.t);
  $('clock').textContent = `${fmt(app.t)} / ${fmt(app.total)}`;
  for (const li of $('events').children) {
    li.classList.toggle('current', Math.abs(Number(li.dataset.t) - app.t) < 0.5);
  }
}

function tick(now) {
  if (!app.playing) return;
  // The clock follows whichever video is playing (so buffering holds it), else wall time.
  const leader = ROLES.map((r) => ({ r, v: $(`video-${r}`), s: segmentAt(r, app.t) }))
    .find((x) => x.s && !x.v.paused && x.v.readyState >= 2 && app.loaded[x.r] === x.s.id);
  if (leader) app.t = leader.s.t_start_ms / 1000 + leader.v.currentTime;
  else app.t += (now - app.lastTick) / 1000;
  app.lastTick = now;
  if (app.t >= app.total) {
    app.t = app.total;
    pause();
  }
  Promise.all(ROLES.map(place)).catch(showError);
  render();
  requestAnimationFrame(tick);
}

function play() {
  if (app.t >= app.total) app.t = 0;
  app.playing = true;
  document.body.dataset.playing = '1';
  $('play-btn').replaceChildren(...bilingual('暂停', 'Pause'));
  app.lastTick = performance.now();
  Promise.all(ROLES.map(place)).catch(showError);
  requestAnimationFrame(tick);
}

function pause() {
  app.playing = false;
  document.body.dataset.playing = '0';
  $('play-btn').replaceChildren(...bilingual('播放', 'Play'));
  for (const r of ROLES) $(`video-${r}`).pause();
}

async function verify() {
  const report = await api(`/api/recordings/${app.data.consultation.id}/verify`);
  const badge = $('verify-result');
  badge.hidden = false;
  badge.dataset.tone = report.ok ? 'ok' : 'bad';
  badge.textContent = report.ok
    ? `完整 Intact — ${report.checked} 个片段 segments`
    : `异常 Problems — 缺失 missing ${report.missing.length}, 被改 altered ${report.altered.length}, 多余 extra ${report.extra.length}`;
  document.body.dataset.verified = report.ok ? 'ok' : 'bad';
}

async function download() {
  const seg = segmentAt('doctor', app.t) || segmentAt('guardian', app.t);
  if (!seg) return;
  const url = await urlFor(seg, 'download');
  const a = el('a', { href: url, download: '' });
  document.body.append(a);
  a.click();
  a.remove();
}

async function main() {
  app.token = readToken();
  if (!app.token) {
    setView('error');
    showError(new Error('链接缺少令牌 The link has no token (#token=…)'));
    return;
  }
  $('search-form').addEventListener('submit', (e) => search(e).catch(showError));
  $('back-btn').addEventListener('click', () => { pause(); setView('search'); });
  $('play-btn').addEventListener('click', () => (app.playing ? pause() : play()));
  $('seek').addEventListener('input', (e) => seek(Number(e.target.value)).catch(showError));
  $('verify-btn').addEventListener('click', () => verify().catch(showError));
  $('download-btn').addEventListener('click', () => download().catch(showError));
  try {
    const open = new URLSearchParams(location.search).get('c');
    if (open) await openConsultation(open);
    else {
      setView('search');
      await search();
    }
  } catch (err) {
    setView('error');
    showError(err);
  }
}

main();
