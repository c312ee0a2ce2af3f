// Adverse events (负性事件处置预案) on the doctor's call page (issue 15): filed during the call or
// afterwards with a severity; a severe one alerts the on-duty staff at once. The doctor sees each
// one's handling record here. Everything shown is set as text, never as HTML.
// The worklist uses the same dialog for the day's finished consultations, with the day token
// (wireAdverseDialog, then openAdverseFor(cid) from a row).
//
// State for tests: document.body.dataset.adverse = filed; #adverse-list items carry data-ref.

import { bilingual } from './bilingual.js';
import { el, pair, refusal, request, when } from './forms.js';

const $ = (id) => document.getElementById(id);

export const SEVERITY = { mild: ['轻度', 'Mild'], moderate: ['中度', 'Moderate'], severe: ['重度', 'Severe'] };
export const AE_STATUS = { open: ['待处置', 'Open'], handling: ['处置中', 'Being handled'], closed: ['已结案', 'Closed'] };
export const ACTIONS = {
  clinical_review: ['临床评估', 'Clinical review'], contacted_family: ['联系患儿家属', 'Contacted the family'],
  referred_in_person: ['转线下就诊', 'Referred in person'], reported_to_authority: ['上报主管部门', 'Reported to the authority'],
  technical_fix: ['技术处置', 'Technical fix'], other: ['其他', 'Other'],
};

let ctx = null;

function openDialog() {
  $('adverse-error').hidden = true;
  $('adverse-done').hidden = true;
  $('adverse-dialog').showModal();
  $('ae-text').focus();
}

// The call page: one consultation, with the call token.
export function wireAdverse(token, cid) {
  wireAdverseDialog(token);
  ctx.cid = cid;
  $('adverse-btn').addEventListener('click', openDialog);
  $('adverse-open-btn').addEventListener('click', openDialog);
}

// A page that reports on several consultations (the worklist, with the day token).
export function openAdverseFor(cid, label = '') {
  if (ctx.cid !== cid) {
    $('ae-text').value = ''; // what was written is about another consultation
    document.querySelectorAll('input[name="ae-severity"]').forEach((r) => { r.checked = false; });
  }
  ctx.cid = cid;
  if ($('adverse-for')) $('adverse-for').textContent = label;
  openDialog();
}

export function wireAdverseDialog(token) {
  ctx = { token, cid: '' };
  const dialog = $('adverse-dialog');
  $('adverse-cancel-btn').addEventListener('click', () => dialog.close());
  $('ae-text').addEventListener('input', () => {
    $('adverse-error').hidden = true;
  });
  $('adverse-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    file();
  });
}

async function file() {
  const severity = document.querySelector('input[name="ae-severity"]:checked')?.value || '';
  const description = $('ae-text').value.trim();
  if (!severity || !description) {
    bilingual($('adverse-error'), '请选择严重程度并填写经过。', 'Choose the severity and describe what happened.');
    $('adverse-error').hidden = false;
    return;
  }
  $('adverse-submit-btn').disabled = true;
  const res = await request('POST', `/api/consultations/${encodeURIComponent(ctx.cid)}/adverse-events`, ctx.token, { severity, description });
  $('adverse-submit-btn').disabled = false;
  if (!res.ok) {
    const { zh, en } = refusal(res);
    bilingual($('adverse-error'), zh, en);
    $('adverse-error').hidden = false;
    return;
  }
  $('ae-text').value = '';
  const done = $('adverse-done');
  const ref = el('strong', 'mono', res.data.ref);
  ref.id = 'adverse-ref';
  done.replaceChildren(pair('span', '', '已登记，编号：', 'Filed. Reference number:'), ' ', ref);
  if (res.data.alerted) done.append(pair('p', 'alerted', '已立即通知值班人员。', 'The staff on duty were alerted.'));
  done.hidden = false;
  document.body.dataset.adverse = 'filed';
  await refreshAdverse();
}

export async function refreshAdverse() {
  if (!ctx || !$('adverse-list')) return;
  const res = await request('GET', `/api/consultations/${encodeURIComponent(ctx.cid)}/adverse-events`, ctx.token);
  if (!res.ok) return;
  $('adverse-list').replaceChildren(...res.data.items.map(renderRecord));
}

function renderRecord(item) {
  const li = el('li', 'thread');
  li.dataset.ref = item.ref;
  li.dataset.status = item.status;
  const head = el('div', 'thread-head');
  const sev = SEVERITY[item.severity] || [item.severity, item.severity];
  const st = AE_STATUS[item.status] || [item.status, item.status];
  head.append(pair('span', `thread-kind severity-${item.severity}`, sev[0], sev[1]), el('span', 'mono thread-ref', item.ref),
    pair('span', `thread-status status-${item.status}`, st[0], st[1]));
  li.append(head, el('p', 'thread-text', item.description), el('p', 'thread-time', when(item.created_at)));
  for (const a of item.actions) {
    const step = el('div', 'thread-reply');
    const what = ACTIONS[a.action] || [a.action, a.action];
    step.append(pair('p', 'thread-who', what[0], what[1]), el('p', 'thread-text', a.note), el('p', 'thread-time', when(a.at)));
    li.append(step);
  }
  return li;
}

export function showAdverseSection() {
  $('adverse-section').hidden = false;
  refreshAdverse();
}
