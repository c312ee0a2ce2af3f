// "中文 English": Chinese first on every label; English in its own span with lang="en", so a
// screen reader switches voice and the English can be styled (or hidden) on its own.
export function bilingual(el, zh, en) {
  const z = document.createElement('span');
  z.className = 'zh';
  z.textContent = zh;
  const e = document.createElement('span');
  e.className = 'en';
  e.lang = 'en';
  e.textContent = en;
  el.replaceChildren(z, ' ', e);
}
