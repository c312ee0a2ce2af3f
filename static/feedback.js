// Questions and complaints on the call page (issue 15; 畅通咨询和投诉渠道): the guardian writes
// one during the call or afterwards, gets a reference number, and reads the hospital's answers
// on this same link. Everything shown is set as text, never as HTML.
//
// The join link's token lasts hours; an answer may take days. Filing with it hands back a
// feedback token (role guardian_feedback: this consultation's questions and complaints, nothing
// else, until TC_FEEDBACK_DAYS after it). The page keeps it in its URL fragment (&feedback=) and
// in this browser's storage under the consultation, reads and writes with it from then on, and
// call.js opens the same join link with it once the call token has expired.
//
// State for people and for tests: document.body.dataset.feedback = sent (after a submission);
// each item in #feedback-list carries data-ref and data-status.

import { bilingual } from './bilingual.js';
import { el, pair, refusal, request, when } from './forms.js';

const $ = (id) => document.getElementById(id);
const POLL_MS = 20_000; // while an item is open, answers are fetched again this often

const KINDS = { question: ['咨询', 'Question'], complaint: ['投诉', 'Complaint'] };
const CATEGORIES = {
  service: ['服务态度', 'Service'], waiting: ['等候时间', 'Waiting time'],
  technical: ['网络与技术', 'Connection and technology'], medical: ['诊疗与用药', 'Care and medicines'],
  privacy: ['隐私与个人信息', 'Privacy'], fees: ['费用', 'Fees'], other: ['其他', 'Other'],
};
const STATUS = { open: ['待处理', 'Open'], replied: ['已回复', 'Answered'], closed: ['已办结', 'Closed'] };
const ANSWERED_BY = { quality: ['医院质控部门', 'The hospital quality office'], admin: ['医院', 'The hospital'] };

let ctx = null; // {token, cid}
let poll = 0;
const STORE = 'tc-feedback:'; // + the consultation id: the guardian's feedback token

// A token's claims, read without checking (the node checks them); null when it is not a JWT.
export function claimsOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return null;
  }
}

function stored(cid) {
  try {
    return localStorage.getItem(STORE + cid) || '';
  } catch {
    return ''; // storage off (private mode, policy): the fragment still holds it
  }
}

// The feedback token kept for `cid` (the link's fragment, then this browser), while valid.
export function keptFeedbackToken(cid) {
  const fromLink = new URLSearchParams(location.hash.replace(/^#/, '')).get('feedback') || '';
  for (const token of [fromLink, stored(cid)]) {
    const c = token && claimsOf(token);
    if (c && c.role === 'guardian_feedback' && c.cid === cid && c.exp * 1000 > Date.now()) return token;
  }
  try {
    localStorage.removeItem(STORE + cid); // expired or not this consultation's: gone
  } catch {
    // nothing kept
  }
  return '';
}

function keep(token) {
  ctx.token = token; // answers are read (and more is asked) with it, past the call token's life
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  params.set('feedback', token);
  history.replaceState(null, '', `${location.pathname}${location.search}#${params}`);
  try {
    localStorage.setItem(STORE + ctx.cid, token);
  } catch {
    // the fragment keeps it
  }
}

export function wireFeedback(token, cid) {
  ctx = { token, cid };
  const dialog = $('feedback-dialog');
  const open = () => {
    $('feedback-error').hidden = true;
    $('feedback-done').hidden = true;
    dialog.showModal();
    $('fb-text').focus();
  };
  $('feedback-btn').addEventListener('click', open);
  $('feedback-open-btn').addEventListener('click', open);
  $('feedback-cancel-btn').addEventListener('click', () => dialog.close());
  $('fb-text').addEventListener('input', () => {
    $('fb-count').textContent = `${$('fb-text').value.length} / 2000`;
    $('feedback-error').hidden = true;
  });
  $('feedback-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    send();
  });
}

async function send() {
  const text = $('fb-text').value.trim();
  if (!text) {
    showError({ zh: '请填写内容。', en: 'Please write your message.' });
    $('fb-text').focus();
    return;
  }
  const kind = document.querySelector('input[name="fb-kind"]:checked')?.value || 'question';
  const category = $('fb-category').value || null;
  const button = $('feedback-submit-btn');
  button.disabled = true;
  const res = await request('POST', `/api/consultations/${encodeURIComponent(ctx.cid)}/feedback`, ctx.token, { kind, category, text });
  button.disabled = false;
  if (!res.ok) {
    showError(refusal(res));
    return;
  }
  if (res.data.feedback_token) keep(res.data.feedback_token);
  $('fb-text').value = '';
  $('fb-count').textContent = '0 / 2000';
  const done = $('feedback-done');
  done.replaceChildren(
    pair('span', '', '已收到，您的编号：', 'Received. Your reference number:'),
    ' ',
    el('strong', 'mono', res.data.ref),
  );
  done.querySelector('strong').id = 'feedback-ref';
  done.hidden = false;
  document.body.dataset.feedback = 'sent';
  await refreshFeedback();
}

function showError({ zh, en }) {
  bilingual($('feedback-error'), zh, en);
  $('feedback-error').hidden = false;
}

// The guardian's items with the answers, in the outcome panel; polled while any is open.
export async function refreshFeedback() {
  if (!ctx) return;
  const res = await request('GET', `/api/consultations/${encodeURIComponent(ctx.cid)}/feedback`, ctx.token);
  if (!res.ok) return;
  const list = $('feedback-list');
  list.replaceChildren(...res.data.items.map(renderItem));
  list.hidden = res.data.items.length === 0;
  clearTimeout(poll);
  if (res.data.items.some((i) => i.status !== 'closed')) poll = setTimeout(refreshFeedback, POLL_MS);
}

function renderItem(item) {
  const li = el('li', 'thread');
  li.dataset.ref = item.ref;
  li.dataset.status = item.status;
  const head = el('div', 'thread-head');
  const kind = KINDS[item.kind] || [item.kind, item.kind];
  const status = STATUS[item.status] || [item.status, item.status];
  head.append(pair('span', 'thread-kind', kind[0], kind[1]), el('span', 'mono thread-ref', item.ref));
  if (item.category && CATEGORIES[item.category]) head.append(pair('span', 'thread-category', ...CATEGORIES[item.category]));
  const badge = pair('span', `thread-status status-${item.status}`, status[0], status[1]);
  head.append(badge);
  li.append(head, el('p', 'thread-text', item.text), el('p', 'thread-time', when(item.created_at)));
  for (const r of item.replies) {
    const reply = el('div', 'thread-reply');
    const who = ANSWERED_BY[r.by] || ['医院', 'The hospital'];
    reply.append(pair('p', 'thread-who', `${who[0]}回复`, `${who[1]} answered`), el('p', 'thread-text', r.text), el('p', 'thread-time', when(r.at)));
    li.append(reply);
  }
  return li;
}

export function showFeedbackSection() {
  $('feedback-section').hidden = false;
  refreshFeedback();
}
