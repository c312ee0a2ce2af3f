// The quality staff's page (issue 15): every open question, complaint and adverse event, with its
// consultation's timeline (GET /api/consultations/{id}/events); answer, record handling, close.
// The token rides in the URL fragment (/quality#token=JWT, a quality or admin token). Everything
// people wrote is set as text, never as HTML.
//
// State for people and tests: body.dataset.phase = loading | ready | error; each item is an
// li[data-ref][data-status] with textarea.reply-text / select.action-kind + textarea.action-note
// and buttons .reply-btn, .action-btn, .close-btn.

import { bilingual } from './bilingual.js';
import { el, pair, refusal, request, when } from './forms.js';
import { ACTIONS, AE_STATUS, SEVERITY } from './adverse.js';

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.hash.replace(/^#/, '')).get('token') || '';
const REFRESH_MS = 30_000;

const KINDS = { question: ['咨询', 'Question'], complaint: ['投诉', 'Complaint'] };
const CATEGORIES = {
  service: ['服务态度', 'Service'], waiting: ['等候时间', 'Waiting time'], technical: ['网络与技术', 'Technology'],
  medical: ['诊疗与用药', 'Care and medicines'], privacy: ['隐私', 'Privacy'], fees: ['费用', 'Fees'], other: ['其他', 'Other'],
};
const STATUS = { open: ['待处理', 'Open'], replied: ['已回复', 'Answered'], closed: ['已办结', 'Closed'] };
const STATES = { scheduled: '已预约 Scheduled', waiting: '等待医生 Waiting', verifying: '核验中 Verifying',
  active: '问诊中 Active', ended: '已结束 Ended', terminated: '已终止 Terminated', aborted: '已中止 Aborted' };
let timer = 0;

function button(className, zh, en, onClick) {
  const b = el('button', `btn ${className}`);
  b.type = 'button';
  b.append(el('span', 'zh', zh));
  const e = el('span', 'en', en);
  e.lang = 'en';
  b.append(e);
  b.addEventListener('click', onClick);
  return b;
}

function consultLine(c, cid) {
  const parts = [cid, c?.hospital, c?.specialty, STATES[c?.state] || c?.state, c?.scheduled_at ? when(c.scheduled_at) : ''];
  return el('p', 'consult-line', `问诊 Consultation: ${parts.filter(Boolean).join(' · ')}`);
}

// The consultation's audit trail, read when the staff member opens it (the read is audited).
function timeline(cid) {
  const details = el('details', 'timeline-box');
  details.append(pair('summary', '', '问诊时间线', 'Consultation timeline'));
  const list = el('ol', 'timeline');
  details.append(list);
  details.addEventListener('toggle', async () => {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = '1';
    const res = await request('GET', `/api/consultations/${encodeURIComponent(cid)}/events`, token);
    if (!res.ok) {
      list.replaceChildren(el('li', 'item-error', refusal(res).zh));
      return;
    }
    list.replaceChildren(...res.data.events.map((e) => {
      const li = el('li');
      li.append(el('span', 'mono', new Date(e.at).toLocaleTimeString('zh-CN', { hour12: false })), ` ${e.kind} · ${e.actor.split(':')[0]}`);
      if (e.data && e.data.ref) li.append(` · ${e.data.ref}`);
      li.dataset.kind = e.kind;
      return li;
    }));
  });
  return details;
}

async function act(li, method, path, body) {
  li.querySelectorAll('button').forEach((b) => { b.disabled = true; });
  const res = await request(method, path, token, body);
  if (!res.ok) {
    const { zh, en } = refusal(res);
    const err = li.querySelector('.item-error');
    bilingual(err, zh, en);
    err.hidden = false;
    li.querySelectorAll('button').forEach((b) => { b.disabled = false; });
    return;
  }
  await load();
}

function head(parts, status, statuses) {
  const h = el('div', 'thread-head');
  h.append(...parts);
  const st = statuses[status] || [status, status];
  h.append(pair('span', `thread-status status-${status}`, st[0], st[1]));
  return h;
}

function steps(li, list, label) {
  for (const s of list) {
    const box = el('div', 'thread-reply');
    const [zh, en] = label(s);
    box.append(pair('p', 'thread-who', zh, en), el('p', 'thread-text', s.text ?? s.note), el('p', 'thread-time', `${when(s.at)} · ${s.by}`));
    li.append(box);
  }
}

function renderFeedback(item) {
  const li = el('li', 'thread');
  li.dataset.ref = item.ref;
  li.dataset.status = item.status;
  const kind = KINDS[item.kind] || [item.kind, item.kind];
  const parts = [pair('span', 'thread-kind', kind[0], kind[1]), el('span', 'mono thread-ref', item.ref)];
  if (item.category) parts.push(pair('span', 'thread-category', ...(CATEGORIES[item.category] || [item.category, item.category])));
  li.append(head(parts, item.status, STATUS), consultLine(item.consultation, item.consultation_id),
    el('p', 'thread-text', item.text), el('p', 'thread-time', when(item.created_at)));
  steps(li, item.replies, () => ['回复', 'Reply']);
  const err = el('p', 'item-error');
  err.hidden = true;
  err.setAttribute('role', 'alert');
  if (item.status !== 'closed') {
    const box = el('div', 'desk-actions');
    const text = el('textarea', 'reply-text');
    text.rows = 3;
    text.maxLength = 2000;
    text.setAttribute('aria-label', `回复 ${item.ref} Reply`);
    const path = `/api/quality/feedback/${encodeURIComponent(item.ref)}`;
    box.append(text, el('div', 'desk-row'));
    box.lastChild.append(
      button('btn-primary reply-btn', '回复', 'Reply', () => act(li, 'POST', `${path}/reply`, { text: text.value })),
      button('btn-outline close-btn', '办结', 'Close', () => act(li, 'POST', `${path}/close`)),
    );
    li.append(box);
  }
  li.append(err, timeline(item.consultation_id));
  return li;
}

function renderAdverse(item) {
  const li = el('li', 'thread');
  li.dataset.ref = item.ref;
  li.dataset.status = item.status;
  const sev = SEVERITY[item.severity] || [item.severity, item.severity];
  li.append(head([pair('span', `thread-kind severity-${item.severity}`, sev[0], sev[1]), el('span', 'mono thread-ref', item.ref)], item.status, AE_STATUS),
    consultLine(item.consultation, item.consultation_id), el('p', 'thread-text', item.description),
    el('p', 'thread-time', `${when(item.created_at)} · ${item.filed_by}`));
  steps(li, item.actions, (a) => ACTIONS[a.action] || [a.action, a.action]);
  const err = el('p', 'item-error');
  err.hidden = true;
  err.setAttribute('role', 'alert');
  if (item.status !== 'closed') {
    const box = el('div', 'desk-actions');
    const kind = el('select', 'action-kind');
    kind.setAttribute('aria-label', '处置措施 Action');
    for (const [value, [zh, en]] of Object.entries(ACTIONS)) {
      const o = el('option', '', `${zh} ${en}`);
      o.value = value;
      kind.append(o);
    }
    const note = el('textarea', 'action-note');
    note.rows = 3;
    note.maxLength = 2000;
    note.setAttribute('aria-label', `处置记录 ${item.ref} Handling note`);
    const path = `/api/quality/adverse-events/${encodeURIComponent(item.ref)}`;
    box.append(kind, note, el('div', 'desk-row'));
    box.lastChild.append(
      button('btn-primary action-btn', '记录处置', 'Record handling', () => act(li, 'POST', `${path}/actions`, { action: kind.value, note: note.value })),
      button('btn-outline close-btn', '结案', 'Close', () => act(li, 'POST', `${path}/close`)),
    );
    li.append(box);
  }
  li.append(err, timeline(item.consultation_id));
  return li;
}

function fail(res, fatal = true) {
  const { zh, en } = refusal(res);
  bilingual($('desk-error'), zh, en);
  $('desk-error').hidden = false;
  if (fatal) document.body.dataset.phase = 'error';
}

async function load() {
  clearTimeout(timer);
  const closed = $('show-closed').checked ? 'true' : 'false';
  const [fb, ae] = await Promise.all([
    request('GET', `/api/quality/feedback?closed=${closed}`, token),
    request('GET', `/api/quality/adverse-events?closed=${closed}`, token),
  ]);
  if (!fb.ok) return fail(fb);
  if (!ae.ok) return fail(ae);
  $('desk-error').hidden = true;
  $('feedback-items').replaceChildren(...fb.data.items.map(renderFeedback));
  $('adverse-items').replaceChildren(...ae.data.items.map(renderAdverse));
  $('feedback-empty').hidden = fb.data.items.length > 0;
  $('adverse-empty').hidden = ae.data.items.length > 0;
  const which = closed === 'true' ? ['已办结', 'closed'] : ['待处理', 'open'];
  bilingual($('summary'), `${which[0]}：咨询投诉 ${fb.data.items.length} 条，负性事件 ${ae.data.items.length} 条`,
    `${which[1]}: ${fb.data.items.length} questions and complaints, ${ae.data.items.length} adverse events`);
  document.body.dataset.phase = 'ready';
  timer = setTimeout(load, REFRESH_MS);
}

async function fileAdverse(ev) {
  ev.preventDefault();
  const cid = $('file-cid').value.trim();
  const res = await request('POST', `/api/consultations/${encodeURIComponent(cid || '-')}/adverse-events`, token,
    { severity: $('file-severity').value, description: $('file-text').value });
  if (!res.ok) return fail(res, false);
  $('file-text').value = '';
  await load();
}

if (!token) {
  bilingual($('summary'), '链接缺少访问令牌（#token=…）', 'The link has no access token (#token=…)');
  document.body.dataset.phase = 'error';
} else {
  $('refresh-btn').addEventListener('click', load);
  $('show-closed').addEventListener('change', load);
  $('file-form').addEventListener('submit', fileAdverse);
  load();
}
