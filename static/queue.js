// The guardian's place in the doctor's queue (issue 15), shown on the call page while the
// guardian waits for the doctor: how many are ahead and roughly how long (GET /api/queue).
// It watches the call page's body dataset (role, phase, state) and asks again every 10 s.
// For people and tests: document.body.dataset.queue is the position (1: next) while shown.
import { bilingual } from './bilingual.js';

const token = new URLSearchParams(location.hash.replace(/^#/, '')).get('token') || '';
const EVERY_MS = 10_000;
let asking = false;

function waiting() {
  const d = document.body.dataset;
  return d.role === 'guardian' && ['incall', 'reconnecting'].includes(d.phase)
    && ['scheduled', 'waiting'].includes(d.state);
}

function hide(el) {
  el.hidden = true;
  delete document.body.dataset.queue;
}

function text(q) {
  const wait = q.wait_min > 0
    ? [`预计等待约 ${q.wait_min} 分钟`, `about ${q.wait_min} min`]
    : ['医生马上就到', 'the doctor will be with you shortly'];
  if (q.ahead === 0) return [`您是下一位，${wait[0]}。`, `You are next: ${wait[1]}.`];
  return [`您前面还有 ${q.ahead} 位，${wait[0]}。`,
    `${q.ahead} ${q.ahead === 1 ? 'family is' : 'families are'} ahead of you: ${wait[1]}.`];
}

async function refresh() {
  const el = document.getElementById('queue-info');
  if (!el || !token || asking) return;
  if (!waiting()) { hide(el); return; }
  asking = true;
  try {
    const response = await fetch('/api/queue', {
      headers: { Authorization: `Bearer ${token}` }, cache: 'no-store',
    });
    if (!response.ok) { hide(el); return; }
    const q = await response.json();
    if (!waiting() || !q.position) { hide(el); return; }
    const [zh, en] = text(q);
    bilingual(el, zh, en);
    el.hidden = false;
    document.body.dataset.queue = String(q.position);
  } catch {
    hide(el); // a rough estimate is not worth an error on the call page
  } finally {
    asking = false;
  }
}

new MutationObserver(refresh).observe(document.body, {
  attributes: true, attributeFilter: ['data-role', 'data-phase', 'data-state'],
});
setInterval(refresh, EVERY_MS);
