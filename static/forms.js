// Small helpers for the pages' forms (issue 15): JSON to and from the node with the page's
// token, and elements built with textContent only (what people type is never parsed as HTML).

export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = text;
  return e;
}

// "中文 English" in one element, the English in its own span with lang="en".
export function pair(tag, className, zh, en) {
  const e = el(tag, className);
  const n = el('span', 'en', en);
  n.lang = 'en';
  e.append(el('span', 'zh', zh), ' ', n);
  return e;
}

// {ok, status, data}; a network failure is status 0 with an error in the node's shape.
export async function request(method, path, token, body) {
  const init = { method, headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    return { ok: false, status: 0, data: { error: { code: 'network', message: err.message, zh: '无法连接服务器，请检查网络。' } } };
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  return { ok: res.ok, status: res.status, data };
}

// The node's refusal in both languages, for an inline error.
export function refusal({ status, data }) {
  const err = (data && data.error) || {};
  const zh = err.zh || (status === 413 ? '内容过长。' : status === 401 ? '链接已失效，请重新打开。' : status === 403 ? '您无权执行此操作。' : status === 422 ? '请检查填写的内容。' : '提交未成功，请稍后再试。');
  return { zh, en: err.message || `HTTP ${status}` };
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString('zh-CN', { hour12: false }) : '';
}
