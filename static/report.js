// The periodic progress report (issue 15): ask for a month or a range, show it as a document a
// hospital can print or send as it is, and download the same numbers as CSV.
//
// /report#token=…[&month=YYYY-MM | &from=YYYY-MM-DD&to=YYYY-MM-DD][&hospital=ID]: with a period
// in the fragment the report is generated at once. For people and tests:
// document.body.dataset.phase  loading | form | working | ready | error
import { bilingual } from './bilingual.js';

const fragment = new URLSearchParams(location.hash.slice(1));
const token = fragment.get('token') || '';
const $ = (id) => document.getElementById(id);
const hospitals = new Map(); // id -> name, as reports have shown them
let current = null; // the query of the report on screen

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v; else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function both(tag, zh, en, attrs = {}) {
  const node = el(tag, attrs);
  bilingual(node, zh, en);
  return node;
}

function setPhase(phase, zh = '', en = '') {
  document.body.dataset.phase = phase;
  bilingual($('message'), zh, en);
}

function beijingMonth(offset) {
  const parts = new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai', year: 'numeric',
    month: '2-digit' }).formatToParts(new Date());
  let y = Number(parts.find((p) => p.type === 'year').value);
  let m = Number(parts.find((p) => p.type === 'month').value) + offset;
  if (m < 1) { m += 12; y -= 1; }
  return `${y}-${String(m).padStart(2, '0')}`;
}

function formQuery() {
  const q = new URLSearchParams();
  if (document.querySelector('input[name=kind]:checked').value === 'month') {
    if (!$('month').value) return null;
    q.set('month', $('month').value);
  } else {
    if (!$('from').value || !$('to').value) return null;
    q.set('from', $('from').value);
    q.set('to', $('to').value);
  }
  if ($('hospital').value) q.set('hospital', $('hospital').value);
  return q;
}

async function fetchReport(path, q) {
  const response = await fetch(`${path}?${q}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const err = body.error || {};
    throw new Error(err.message || `HTTP ${response.status}`);
  }
  return response;
}

async function generate(q) {
  setPhase('working', '正在生成…', 'Generating…');
  $('csv').disabled = $('print').disabled = true;
  try {
    const report = await (await fetchReport('/api/reports/progress', q)).json();
    current = q;
    render(report);
    setPhase('ready', '报告已生成，可打印或下载 CSV。', 'The report is ready: print it or download the CSV.');
    $('csv').disabled = $('print').disabled = false;
  } catch (err) {
    setPhase('error', `无法生成报告：${err.message}`, `The report could not be made: ${err.message}`);
  }
}

function value(counts, key) {
  return key.split('.').reduce((v, part) => (v == null ? v : v[part]), counts) ?? 0;
}

function periodText(period) {
  if (period.month) {
    const [y, m] = period.month.split('-').map(Number);
    const en = new Date(Date.UTC(y, m - 1, 1)).toLocaleString('en', { month: 'long', year: 'numeric', timeZone: 'UTC' });
    return [`${y}年${m}月（${period.from} 至 ${period.to}）`, `${en} (${period.from} to ${period.to})`];
  }
  return [`${period.from} 至 ${period.to}`, `${period.from} to ${period.to}`];
}

// One table: the measures down, the columns across (specialties and a total).
function table(columns, measures, sections) {
  const head = el('tr', {}, both('th', '项目', 'Measure'),
    ...columns.map((c) => both('th', c.zh, c.en, { class: 'n', scope: 'col' })));
  const body = el('tbody');
  for (const section of sections) {
    const rows = measures.filter((m) => m.section === section.key);
    body.append(el('tr', { class: 'section' },
      both('th', section.zh, section.en, { colspan: String(columns.length + 1), scope: 'colgroup' })));
    for (const m of rows) {
      const values = columns.map((c) => value(c.counts, m.key));
      // A termination reason nobody gave is left out on paper (the CSV keeps every column).
      if (m.key.includes('.terminated_reason.') && values.every((v) => v === 0)) continue;
      body.append(el('tr', { 'data-key': m.key }, both('td', m.zh, m.en, { class: 'label' }),
        ...values.map((v, i) => el('td', { class: 'n', 'data-col': columns[i].id }, String(v)))));
    }
  }
  return el('table', {}, el('thead', {}, head), body);
}

function render(report) {
  for (const h of report.hospitals) if (h.id) hospitals.set(h.id, h.name || h.id);
  fillHospitals();
  const [pzh, pen] = periodText(report.period);
  bilingual($('meta-period'), pzh, pen);
  const chosen = report.hospital_filter;
  if (chosen) $('meta-hospital').textContent = hospitals.get(chosen) || chosen;
  else bilingual($('meta-hospital'), '全部试点医院', 'All pilot hospitals');
  const at = new Date(report.generated.at);
  bilingual($('meta-generated'),
    `${at.toLocaleString('zh-CN', { timeZone: 'Asia/Shanghai', hour12: false })}（北京时间）`,
    `${at.toLocaleString('en-GB', { timeZone: 'Asia/Shanghai' })} (Beijing)`);
  $('meta-by').textContent = report.generated.by;
  $('meta-event').textContent = report.generated.event;

  const parts = [];
  for (const h of report.hospitals) {
    const columns = h.specialties.map((s) => ({
      id: s.specialty || '', zh: s.specialty || '未关联问诊', en: s.specialty ? '' : 'not linked',
      counts: s.counts,
    }));
    columns.push({ id: '*', zh: '合计', en: 'Total', counts: h.total });
    const name = h.id ? [h.name || h.id, ''] : ['未关联问诊的事项', 'Items not linked to a consultation'];
    parts.push(el('section', { class: 'hospital', 'data-hospital': h.id || '' },
      both('h2', name[0], name[1]), table(columns, report.measures, report.sections)));
  }
  if (report.hospitals.length !== 1) {
    parts.push(el('section', { class: 'hospital', 'data-hospital': '*' },
      both('h2', '全部医院合计', 'All hospitals'),
      table([{ id: '*', zh: '合计', en: 'Total', counts: report.total }], report.measures, report.sections)));
  }
  $('tables').replaceChildren(...parts);
  $('report').hidden = false;
}

function fillHospitals() {
  const select = $('hospital');
  const chosen = select.value;
  select.replaceChildren(el('option', { value: '' }, '全部 All'),
    ...[...hospitals].map(([id, name]) => el('option', { value: id }, name)));
  select.value = chosen;
}

async function downloadCsv() {
  try {
    const response = await fetchReport('/api/reports/progress.csv', current);
    const name = /filename="([^"]+)"/.exec(response.headers.get('Content-Disposition') || '');
    const url = URL.createObjectURL(await response.blob());
    const a = el('a', { href: url, download: name ? name[1] : 'progress.csv' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    setPhase('error', `无法下载：${err.message}`, `The download failed: ${err.message}`);
  }
}

function start() {
  if (!token) {
    setPhase('error', '链接缺少访问令牌（#token=…）', 'The link has no access token (#token=…)');
    return;
  }
  $('month').value = fragment.get('month') || beijingMonth(-1);
  if (fragment.get('from')) {
    document.querySelector('input[name=kind][value=range]').checked = true;
    $('from').value = fragment.get('from');
    $('to').value = fragment.get('to') || '';
  }
  if (fragment.get('hospital')) {
    hospitals.set(fragment.get('hospital'), fragment.get('hospital'));
    fillHospitals();
    $('hospital').value = fragment.get('hospital');
  }
  $('controls').addEventListener('submit', (event) => {
    event.preventDefault();
    const q = formQuery();
    if (q) generate(q);
    else setPhase('error', '请选择月份或起止日期', 'Choose a month, or the first and last day');
  });
  $('csv').addEventListener('click', downloadCsv);
  $('print').addEventListener('click', () => window.print());
  if (fragment.get('month') || fragment.get('from')) generate(formQuery());
  else setPhase('form');
}

start();
