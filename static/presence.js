// Guardian presence banner (issue 4), kept out of call.js on purpose.
//
// In a pediatric consultation the node checks the patient side's video for an enrolled guardian
// and sends `presence` messages (signaling/PROTOCOL.md) when that changes:
//   { type: 'presence', guardian: 'present' | 'absent', faces, at, zh, en }
// While the guardian is absent both pages show a banner over the video
// ("请监护人回到镜头前 / Guardian, please return to the camera").
// State for people and for tests: document.body.dataset.guardian = present | absent

const STYLE = `
.presence-banner { position: absolute; left: 50%; top: 60px; transform: translateX(-50%);
  z-index: 5; display: flex; gap: 10px; align-items: center; padding: 10px 18px;
  border-radius: 999px; background: var(--danger-soft, #fdecea); color: var(--danger, #b42318);
  border: 2px solid var(--danger, #b42318); font-weight: 700; font-size: 1.05rem;
  box-shadow: var(--shadow, 0 2px 8px rgba(0,0,0,.2)); white-space: nowrap; }
.presence-banner .en { font-weight: 500; }
`;

let banner = null;

function ensureBanner() {
  if (banner) return banner;
  const style = document.createElement('style');
  style.textContent = STYLE;
  document.head.append(style);
  banner = document.createElement('div');
  banner.id = 'presence-banner';
  banner.className = 'presence-banner';
  banner.setAttribute('role', 'alert');
  banner.hidden = true;
  const stage = document.querySelector('.stage') || document.body;
  stage.append(banner);
  return banner;
}

export function handlePresence(msg) {
  const state = msg.guardian === 'absent' ? 'absent' : 'present';
  document.body.dataset.guardian = state;
  const box = ensureBanner();
  if (state === 'absent') {
    const zh = document.createElement('span');
    zh.className = 'zh';
    zh.textContent = msg.zh || '请监护人回到镜头前';
    const en = document.createElement('span');
    en.className = 'en';
    en.lang = 'en';
    en.textContent = msg.en || 'Guardian, please return to the camera';
    box.replaceChildren('⚠', zh, en);
  }
  box.hidden = state !== 'absent';
}
