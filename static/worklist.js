// The doctor's day (issue 15): today's consultations with live status, over server-sent events,
// and joining one from the list (the node hands out that consultation's call link). A finished
// consultation has a button to report an adverse event with the day token (static/adverse.js),
// for when the call page is closed.
//
// /worklist#token=<doctor_day token>. For people and tests: document.body.dataset
//   phase    loading | live | reconnecting | error
//   waiting  how many guardians are waiting now
//   adverse  filed, once an adverse event is stored
// and each row: tr[data-cid][data-guardian][data-consent][data-on-camera]; the report button
// button.adverse[data-ae-cid].
import { bilingual } from './bilingual.js';
import { openAdverseFor, wireAdverseDialog } from './adverse.js';

const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
const $ = (id) => document.getElementById(id);

const VISITS = { first: ['初诊', 'First visit'], follow_up: ['复诊', 'Follow-up'] };
const GUARDIAN = {
  waiting: ['候诊中', 'waiting', 'ok'], in_call: ['问诊中', 'in the call', 'ok'],
  reconnecting: ['重连中', 'reconnecting', 'warn'], left: ['已离开', 'left', 'warn'],
  not_joined: ['未到', 'not here yet', ''],
};
const STATES = {
  ended: ['已结束', 'ended'], terminated: ['已终止', 'terminated'], aborted: ['已中止', 'aborted'],
  verifying: ['核验中', 'verifying'], active: ['问诊中', 'active'],
};
const CAMERA = { present: ['在镜头前', 'on camera', 'ok'], absent: ['不在镜头前', 'off camera', 'bad'] };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v; else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function tag([zh, en, tone = ''], extra = '') {
  const node = el('span', { class: `tag ${tone} ${extra}`.trim() });
  bilingual(node, zh, en);
  return node;
}

function ageText(age) {
  if (!age) return ['', ''];
  if (age.years >= 1) return [`${age.years}岁`, `${age.years} y`];
  return [`${age.months}个月`, `${age.months} mo`];
}

function row(c) {
  const [azh, aen] = ageText(c.patient.age);
  const patient = el('td', {}, `${c.patient.name} `, tag([azh, aen]));
  if (c.pediatric) patient.append(' ', tag(['儿童', 'child', 'child']));
  const over = ['ended', 'terminated', 'aborted'].includes(c.state);
  const side = over ? tag([...(STATES[c.state] || [c.state, c.state])])
    : tag(GUARDIAN[c.guardian] || [c.guardian, c.guardian]);
  if (!over && STATES[c.state]) side.append(' ', tag(STATES[c.state]));
  const join = el('button', { class: 'primary', type: 'button', 'data-cid': c.consultation_id });
  bilingual(join, '接诊', 'Join');
  join.disabled = !c.joinable;
  join.addEventListener('click', () => open(c.consultation_id, join));
  const actions = el('td', {}, join);
  if (over) {
    const report = el('button', { class: 'adverse', type: 'button', 'data-ae-cid': c.consultation_id });
    bilingual(report, '负性事件', 'Adverse event');
    report.addEventListener('click', () => openAdverseFor(c.consultation_id, `${c.time} · ${c.patient.name}`));
    actions.append(report);
  }
  const tr = el('tr', {
    'data-cid': c.consultation_id, 'data-guardian': c.guardian, 'data-state': c.state,
    'data-consent': c.consent ? 'given' : 'pending', 'data-on-camera': c.on_camera || '',
    class: over ? 'over' : (c.guardian === 'waiting' ? 'waiting' : ''),
  },
  el('td', { class: 'time' }, c.time),
  patient,
  el('td', {}, tag(VISITS[c.visit_type] || [c.visit_type, c.visit_type]), el('br'), c.specialty),
  el('td', {}, side),
  el('td', {}, c.consent ? tag(['已签署', 'given', 'ok']) : tag(['未签署', 'not yet'])),
  el('td', {}, c.on_camera ? tag(CAMERA[c.on_camera] || [c.on_camera, c.on_camera]) : '—'),
  actions);
  return tr;
}

function render(snapshot) {
  if (snapshot.doctor && !snapshot.doctor.active) {
    document.body.dataset.phase = 'error';
    bilingual($('summary'), '您的接诊权限已暂停，请联系医务管理部门。',
      'Your consulting rights are suspended: please contact the medical affairs office.');
    stream.close();
    return;
  }
  const list = snapshot.consultations || [];
  const waiting = list.filter((c) => c.guardian === 'waiting').length;
  document.body.dataset.phase = 'live';
  document.body.dataset.waiting = String(waiting);
  document.title = `${waiting ? `(${waiting}) ` : ''}今日接诊 · My consultations today`;
  const name = (snapshot.doctor && snapshot.doctor.name) || '';
  const live = snapshot.live_state === 'ok' ? ['', '']
    : [' · 实时状态暂不可用', ' · live status unavailable'];
  bilingual($('summary'), `${name} · ${snapshot.date} · ${list.length} 位患者，${waiting} 位候诊中${live[0]}`,
    `${snapshot.date} · ${list.length} consultations, ${waiting} waiting${live[1]}`);
  if (!list.length) {
    $('rows').replaceChildren(el('tr', {}, el('td', { colspan: '7', class: 'empty' }, '今日暂无问诊 Nothing booked today')));
    return;
  }
  const focused = document.activeElement && document.activeElement.dataset.cid;
  $('rows').replaceChildren(...list.map(row));
  if (focused) document.querySelector(`button[data-cid="${CSS.escape(focused)}"]`)?.focus();
}

async function open(cid, button) {
  button.disabled = true;
  $('message').textContent = '';
  try {
    const response = await fetch(`/api/worklist/${encodeURIComponent(cid)}/join`, {
      method: 'POST', headers: { Authorization: `Bearer ${token}` },
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
    location.assign(body.link); // the call page, with this consultation's own token
  } catch (err) {
    bilingual($('message'), `无法接诊：${err.message}`, `Could not open the consultation: ${err.message}`);
    button.disabled = false;
  }
}

let stream = null;

function connect() {
  const source = new EventSource(`/api/worklist/stream?token=${encodeURIComponent(token)}`);
  stream = source;
  source.onmessage = (event) => render(JSON.parse(event.data));
  source.onerror = () => {
    document.body.dataset.phase = 'reconnecting';
    bilingual($('summary'), '连接中断，正在重连…', 'Connection lost, reconnecting…');
  };
}

if (!token) {
  document.body.dataset.phase = 'error';
  bilingual($('summary'), '链接缺少访问令牌（#token=…），请向管理员索取今日链接。',
    'The link has no access token (#token=…): ask the administrator for today\'s link.');
} else {
  wireAdverseDialog(token);
  connect();
}
