// Consent, termination and referral on the call page (issue 6).
//
// Rendering and form reading only: call.js owns the connection and calls these. The texts come
// from the node (/api/consent, /api/consultations/{id}/referral), never from this file, so what
// the guardian reads is exactly the versioned text the node records consent to.

const $ = (id) => document.getElementById(id);

const REASONS = {
  condition_changed: { zh: '病情变化', en: 'The condition changed' },
  needs_in_person: { zh: '需要线下检查', en: 'Needs an in-person examination' },
  first_visit_outside_pilot: { zh: '属试点范围外的初诊', en: 'A first visit outside the pilot' },
  guardian_absent: { zh: '监护人不在场', en: 'The guardian was absent' },
  technical_failure: { zh: '技术故障', en: 'Technical failure' },
  doctor_identity_lost: { zh: '医生身份核验未通过', en: "The doctor's identity could not be confirmed" },
  other: { zh: '其他', en: 'Other' },
};

const URGENCY = {
  routine: { zh: '常规：请预约线下门诊', en: 'Routine: book an in-person appointment' },
  urgent: { zh: '尽快：请在 24 小时内线下就诊', en: 'Urgent: see a doctor in person within 24 hours' },
  emergency: { zh: '紧急：请立即前往急诊', en: 'Emergency: go to the emergency department now' },
};

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = text;
  return e;
}

function pair(tag, className, zh, en) {
  const e = el(tag, className);
  const z = el('span', 'zh', zh);
  const n = el('span', 'en', en);
  n.lang = 'en';
  e.append(z, ' ', n);
  return e;
}

async function getJson(path, token) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
  let data = null;
  try {
    data = await res.json();
  } catch {
    // not JSON
  }
  return { ok: res.ok, status: res.status, data };
}

// ---------------------------------------------------------------------------------------------
// Consent

export async function loadConsent(token) {
  const { ok, data } = await getJson('/api/consent', token);
  return ok ? data : null;
}

// Fill the consent section of the prejoin panel; returns the version shown.
export function renderConsent(consent) {
  const { text } = consent;
  $('consent-title-zh').textContent = text.title.zh;
  $('consent-title-en').textContent = text.title.en;
  const box = $('consent-text');
  box.replaceChildren();
  for (const s of text.sections) {
    const sec = el('section', 'consent-section');
    sec.append(pair('h3', 'consent-heading', s.heading.zh, s.heading.en));
    sec.append(el('p', 'consent-zh', s.zh));
    const en = el('p', 'consent-en', s.en);
    en.lang = 'en';
    sec.append(en);
    box.append(sec);
  }
  $('consent-agree-zh').textContent = text.agree.zh;
  $('consent-agree-en').textContent = ` ${text.agree.en}`;
  $('consent-version').textContent = text.version;
  $('consent').hidden = false;
  return text.version;
}

// ---------------------------------------------------------------------------------------------
// Termination form (doctor)

// The `terminate` message from the form, or {error} in both languages naming what is missing.
export function readTerminateForm() {
  const reason = $('term-reason').value;
  const text = $('term-text').value.trim();
  const hospital = $('term-hospital').value.trim();
  const department = $('term-department').value.trim();
  const urgency = (document.querySelector('input[name="urgency"]:checked') || {}).value || '';
  const note = $('term-note').value.trim();
  const missing = [];
  if (!reason) missing.push(['终止原因', 'reason', 'term-reason']);
  if (reason === 'other' && !text) missing.push(['其他原因说明', 'the reason in words', 'term-text']);
  if (!hospital) missing.push(['转诊医院', 'the hospital', 'term-hospital']);
  if (!department) missing.push(['科室', 'the department', 'term-department']);
  if (!urgency) missing.push(['紧急程度', 'the urgency', 'term-urgency-routine']);
  if (missing.length) {
    return {
      error: {
        zh: `请填写：${missing.map((m) => m[0]).join('、')}`,
        en: `Please give ${missing.map((m) => m[1]).join(', ')}.`,
      },
      focus: missing[0][2],
    };
  }
  const msg = { type: 'terminate', reason, referral: { hospital, department, urgency, note } };
  if (reason === 'other') msg.text = text;
  return { msg };
}

export function resetTerminateForm() {
  $('terminate-form').reset();
  $('term-text-field').hidden = true;
  $('terminate-error').hidden = true;
}

// ---------------------------------------------------------------------------------------------
// Referral (both sides; printable)

export async function loadReferral(token, cid) {
  const { ok, data } = await getJson(`/api/consultations/${encodeURIComponent(cid)}/referral`, token);
  return ok ? data : null;
}

function row(dl, zh, en, value, className = '') {
  const wrap = el('div', className);
  const dt = el('dt');
  dt.append(`${zh} `);
  const e = el('span', '', en);
  e.lang = 'en';
  dt.append(e);
  const dd = el('dd');
  if (value instanceof Node) dd.append(value);
  else dd.textContent = value || '—';
  wrap.append(dt, dd);
  dl.append(wrap);
}

export function renderReferral(box, data) {
  const r = data.referral;
  const urgency = URGENCY[r.urgency] || { zh: r.urgency, en: r.urgency };
  const reason = REASONS[data.reason] || { zh: data.reason, en: data.reason };
  box.replaceChildren();
  box.dataset.urgency = r.urgency;
  const head = el('div', 'referral-head');
  head.append(pair('h2', 'referral-title', '转诊单', 'Referral'));
  const number = el('p', 'referral-number');
  number.append('问诊号 ');
  const en = el('span', '', 'Consultation No. ');
  en.lang = 'en';
  number.append(en, el('span', 'mono', data.consultation.id));
  head.append(number);
  box.append(head);

  const alert = pair('p', `referral-urgency urgency-${r.urgency}`, urgency.zh, urgency.en);
  alert.setAttribute('role', r.urgency === 'emergency' ? 'alert' : 'status');
  alert.id = 'referral-urgency';
  box.append(alert);

  const dl = el('dl', 'referral-details');
  row(dl, '前往医院', 'Go to', r.hospital, 'referral-main');
  row(dl, '科室', 'Department', r.department, 'referral-main');
  const why = pair('span', '', reason.zh, reason.en);
  if (data.text) why.append(el('span', 'referral-text', `：${data.text}`));
  row(dl, '终止原因', 'Reason', why);
  if (r.note) row(dl, '医生说明', "Doctor's note", r.note, 'referral-note');
  const c = data.consultation;
  row(dl, '原问诊', 'Consultation', [c.hospital, c.specialty].filter(Boolean).join(' · '));
  if (c.patient) row(dl, '患者', 'Patient', c.patient);
  row(dl, '开具时间', 'Issued', new Date(data.at).toLocaleString('zh-CN', { hour12: false }));
  box.append(dl);

  const hint = pair('p', 'referral-hint', '就诊时请出示本转诊单（可打印或截图）。', 'Show this referral at the hospital (print it or take a screenshot).');
  box.append(hint);
  const actions = el('div', 'referral-actions');
  const print = el('button', 'btn btn-outline');
  print.type = 'button';
  print.id = 'print-referral-btn';
  print.append(el('span', 'zh', '打印转诊单'));
  const pe = el('span', 'en', 'Print the referral');
  pe.lang = 'en';
  print.append(pe);
  print.addEventListener('click', () => window.print());
  actions.append(print);
  box.append(actions);
  box.hidden = false;
}
