// The doctor registry admin page (issue 3). The admin token rides in the URL fragment
// (/admin/doctors#token=JWT) so it never reaches a server log. Every change is an event server-side.

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.hash.replace(/^#/, '')).get('token') || '';
const STATUS = { active: '有效 Active', suspended: '暂停 Suspended', revoked: '撤销 Revoked' };
const TITLES = { resident: '住院医师', attending: '主治医师', associate_chief: '副主任医师', chief: '主任医师' };
let doctors = [];

function say(text, kind = 'ok') {
  $('msg').textContent = text;
  $('msg').dataset.kind = kind;
}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${token}`, ...(options.headers || {}) },
    cache: 'no-store',
  });
  const body = res.headers.get('content-type')?.includes('json') ? await res.json() : null;
  if (!res.ok) throw new Error(body?.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${res.status}`);
  return body;
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function render(list, hospitals) {
  const select = $('hospital-select');
  select.replaceChildren(...Object.entries(hospitals).map(([id, name]) => new Option(name, id)));
  $('doctors').replaceChildren(...list.map((d) => {
    const tr = document.createElement('tr');
    const status = cell('');
    const tag = document.createElement('span');
    tag.className = `tag tag-${d.whitelist_status}`;
    tag.textContent = STATUS[d.whitelist_status] || d.whitelist_status;
    status.append(tag);
    if (d.whitelist_reason) status.append(` ${d.whitelist_reason}`);
    const face = cell(d.face ? `已登记 Enrolled (${d.face.photo_sha256.slice(0, 8)}…)` : '未登记 Not enrolled');
    const actions = document.createElement('td');
    const edit = document.createElement('button');
    edit.className = 'btn btn-outline';
    edit.type = 'button';
    edit.textContent = '编辑 Edit';
    edit.onclick = () => fill(d);
    actions.append(edit);
    tr.append(cell(d.name), cell(`${TITLES[d.title] || d.title}`), cell(d.licence_no), status, face, actions);
    return tr;
  }));
}

function fill(d) {
  const form = $('doctor-form');
  for (const [k, v] of Object.entries(d)) {
    const input = form.elements.namedItem(k);
    if (input && input.type !== 'file') input.value = Array.isArray(v) ? v.join(', ') : v ?? '';
  }
  form.scrollIntoView();
}

async function load() {
  const data = await api('/api/admin/doctors');
  doctors = data.doctors;
  render(doctors, data.hospitals);
  document.body.dataset.phase = 'ready';
}

async function save(event) {
  event.preventDefault();
  const form = event.target;
  const f = Object.fromEntries(new FormData(form));
  const body = {};
  for (const k of ['name', 'national_id_masked', 'licence_no', 'hospital_id', 'title', 'whitelist_status']) body[k] = f[k];
  for (const k of ['clinical_practice_since', 'online_practice_since', 'training_passed_on']) body[k] = f[k] || null;
  body.specialties = (f.specialties || '').split(/[,，]/).map((s) => s.trim()).filter(Boolean);
  if (f.whitelist_reason) body.whitelist_reason = f.whitelist_reason;
  try {
    const doctor = f.id
      ? await api(`/api/admin/doctors/${f.id}`, { method: 'PATCH', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } })
      : await api('/api/admin/doctors', { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
    const photo = form.elements.namedItem('photo').files[0];
    if (photo) {
      await api(`/api/admin/doctors/${doctor.id}/face`, { method: 'PUT', body: photo, headers: { 'Content-Type': photo.type } });
    }
    say('已保存 Saved');
    form.reset();
    await load();
  } catch (err) {
    say(`保存失败 Not saved — ${err.message}`, 'error');
  }
}

$('doctor-form').addEventListener('submit', save);
$('doctor-form').addEventListener('reset', () => { $('doctor-form').elements.namedItem('id').value = ''; });
load().catch((err) => { say(`无法加载 Cannot load — ${err.message}`, 'error'); document.body.dataset.phase = 'error'; });
