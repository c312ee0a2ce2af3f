// The doctor's identity verification panel (issue 3), kept out of call.js on purpose.
//
// The node verifies the doctor from its own copy of the live camera video (never a photo from
// this page) and tells the page what it needs through `verify` messages (signaling/PROTOCOL.md):
//   step: waiting_video | looking | guidance | challenge | verified | failed | locked
// This module only shows them. State for people and for tests: document.body.dataset
//   verify           the last step
//   verifyReason     the last reason: guidance (no_face, several_faces, too_dark, face_too_small,
//                    challenge_not_done, no_video: what to fix, no attempt used) or a failure
//                    (not_registered, challenge_wrong: these count towards the lock)
//   verifyChallenge  the action asked for now (blink, turn_left, turn_right)
//   verifyStepIndex  which action of the sequence it is ("2/3")

const TONES = {
  waiting_video: 'info',
  looking: 'info',
  guidance: 'warn',
  challenge: 'warn',
  verified: 'ok',
  failed: 'danger',
  locked: 'danger',
};

const TITLES = {
  waiting_video: ['身份核验', 'Identity check'],
  looking: ['身份核验中', 'Checking your identity'],
  guidance: ['请调整后继续', 'Please fix this to go on'],
  challenge: ['活体检测：请完成动作', 'Liveness check: please do this'],
  verified: ['身份核验通过', 'Identity verified'],
  failed: ['身份核验未通过', 'Identity check failed'],
  locked: ['身份核验已锁定', 'Identity check locked'],
};

const STYLE = `
.verify-panel { margin: 12px 0; padding: 12px 16px; border-radius: var(--radius-s, 10px);
  border: 1px solid var(--line, #d9e4e7); background: var(--surface, #fff);
  border-left: 6px solid var(--vtone, var(--neutral, #52646c)); }
.verify-panel[data-tone="info"] { --vtone: var(--blue, #1f66a8); background: var(--blue-soft, #e7f0f9); }
.verify-panel[data-tone="warn"] { --vtone: var(--warn, #8a5300); background: var(--warn-soft, #fff3dc); }
.verify-panel[data-tone="ok"] { --vtone: var(--ok, #17703b); background: var(--ok-soft, #e4f4ea); }
.verify-panel[data-tone="danger"] { --vtone: var(--danger, #b42318); background: var(--danger-soft, #fdecea); }
.verify-panel h3 { margin: 0 0 4px; font-size: 1rem; color: var(--ink, #15303a); }
.verify-panel p { margin: 2px 0; color: var(--ink, #15303a); }
.verify-panel .en { color: var(--ink-2, #4b616a); font-size: .92em; }
.verify-panel .verify-action { font-size: 1.25rem; font-weight: 600; }
.verify-panel .verify-meta { color: var(--ink-2, #4b616a); font-size: .85em; }
`;

let panel = null;
let countdown = null;

function ensurePanel() {
  if (panel) return panel;
  const style = document.createElement('style');
  style.textContent = STYLE;
  document.head.append(style);
  panel = document.createElement('section');
  panel.id = 'verify-panel';
  panel.className = 'verify-panel';
  panel.setAttribute('role', 'status');
  panel.setAttribute('aria-live', 'assertive');
  const hint = document.getElementById('accept-hint');
  if (hint && hint.parentNode) hint.parentNode.insertBefore(panel, hint);
  else (document.getElementById('call') || document.body).prepend(panel);
  return panel;
}

function line(cls, zh, en) {
  const p = document.createElement('p');
  p.className = cls;
  const z = document.createElement('span');
  z.className = 'zh';
  z.textContent = zh || '';
  const e = document.createElement('span');
  e.className = 'en';
  e.lang = 'en';
  e.textContent = en || '';
  p.append(z, ' ', e);
  return p;
}

export function handleVerify(msg) {
  const step = String(msg.step || '');
  const body = document.body;
  body.dataset.verify = step;
  if (msg.reason) body.dataset.verifyReason = msg.reason;
  if (msg.challenge) body.dataset.verifyChallenge = msg.challenge;
  if (step === 'challenge' && msg.index && msg.of) body.dataset.verifyStepIndex = `${msg.index}/${msg.of}`;
  const box = ensurePanel();
  box.hidden = false;
  box.dataset.tone = TONES[step] || 'info';
  const [tzh, ten] = TITLES[step] || ['身份核验', 'Identity check'];
  const title = document.createElement('h3');
  title.textContent = `${tzh} ${ten}`;
  if (step === 'challenge' && msg.index && msg.of) {
    title.textContent += ` — 第 ${msg.index}/${msg.of} 个动作 action ${msg.index} of ${msg.of}`;
  }
  const parts = [title, line(step === 'challenge' ? 'verify-action' : 'verify-text', msg.zh, msg.en)];
  if (step === 'guidance') {
    parts.push(line('verify-meta', '此项不计入核验失败次数', 'This does not count as a failed attempt'));
  }
  if (step === 'failed' && typeof msg.remaining === 'number') {
    parts.push(line('verify-meta', msg.remaining > 0 ? `还可重试 ${msg.remaining} 次，即将自动重试` : '',
      msg.remaining > 0 ? `${msg.remaining} attempt(s) left; retrying shortly` : ''));
  }
  if (countdown) clearInterval(countdown);
  countdown = null;
  if (step === 'challenge' && msg.seconds) {
    const meta = line('verify-meta', '', '');
    parts.push(meta);
    const until = Date.now() + msg.seconds * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      meta.firstChild.textContent = `剩余 ${left} 秒`;
      meta.lastChild.textContent = `${left} s left`;
      if (!left && countdown) clearInterval(countdown);
    };
    tick();
    countdown = setInterval(tick, 500);
  }
  box.replaceChildren(...parts);
}
