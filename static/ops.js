// Ops monitoring: live consultations across all nodes (server-sent events), ending one.
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
const $ = (id) => document.getElementById(id);
const STATES = {
  scheduled: "已预约 Scheduled", waiting: "等待医生 Waiting", verifying: "医生核验中 Verifying",
  active: "问诊中 Active", ended: "已结束 Ended", terminated: "已终止 Terminated",
  aborted: "已中止 Aborted",
};
const STATUS = { connected: "在线 connected", reconnecting: "重连中 reconnecting",
  left: "已离开 left", absent: "未加入 absent" };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function quality(p) {
  const video = (p.stats || {}).video;
  if (!video) return el("span", { class: "q" }, "—");
  const net = ((p.stats || {}).network || {}).video || {};
  const rtt = net.rtt_ms ?? null;
  const loss = net.loss_percent ?? null;
  const poor = video.fps < 10 || (loss !== null && loss > 5) || (rtt !== null && rtt > 400);
  const parts = [`上行 up ${video.fps} fps`, `${video.kbps} kbit/s`];
  if (rtt !== null) parts.push(`RTT ${rtt} ms`);
  if (loss !== null) parts.push(`丢包 loss ${loss}%`);
  if (net.jitter_ms !== undefined) parts.push(`jitter ${net.jitter_ms} ms`);
  return el("span", { class: poor ? "q poor" : "q" },
    parts.join(" · ") + (poor ? " · 网络差 poor" : ""));
}

// What the node sends the participant, and what it knows of their downlink (issue 11). The
// same limit as signaling/call_stats.py: far fewer frames than there are to send is poor.
function sent(p) {
  const video = ((p.stats || {}).sent || {}).video;
  if (!video) return el("span", { class: "q sent" }, "下行 down —");
  const bw = (p.stats || {}).bandwidth || {};
  const poor = video.fps < 10 && (video.source_fps || 0) >= 10;
  const parts = [`下行 down ${video.fps} fps`, `${video.kbps} kbit/s`];
  if (video.dropped) parts.push(`丢弃 dropped ${video.dropped}`);
  if (bw.downlink_kbps !== null && bw.downlink_kbps !== undefined) {
    parts.push(`带宽估计 est. ${bw.downlink_kbps} kbit/s`);
  }
  if (bw.queue_ms !== null && bw.queue_ms !== undefined) parts.push(`排队 queue ${bw.queue_ms} ms`);
  return el("span", { class: poor ? "q sent poor" : "q sent" },
    parts.join(" · ") + (poor ? " · 网络差 poor" : ""));
}

// What the participant's own page says it receives (issue 11: the `quality` reports).
const LEVELS = { good: "良好 good", fair: "一般 fair", poor: "较差 poor" };

function delivered(p) {
  const d = p.delivered;
  if (!d || p.status !== "connected") return el("span", { class: "q delivered" }, "送达 delivered: —");
  const parts = [LEVELS[d.level] || d.level];
  if (d.fps !== undefined) parts.push(`${d.fps} fps`);
  if (d.freezes !== undefined) parts.push(`卡顿 freezes ${d.freezes}${d.freeze_s ? ` (${d.freeze_s} s)` : ""}`);
  if (d.loss_percent !== undefined) parts.push(`丢包 loss ${d.loss_percent}%`);
  if (d.rtt_ms !== undefined) parts.push(`RTT ${d.rtt_ms} ms`);
  if (d.concealed_percent !== undefined) parts.push(`音频补偿 concealed ${d.concealed_percent}%`);
  return el("span", { class: d.level === "poor" ? "q delivered poor" : "q delivered",
    "data-level": d.level, "data-fps": String(d.fps ?? "") },
  "送达 delivered: " + parts.join(" · "));
}

function participant(p) {
  if (!p) return el("span", { class: "who" }, STATUS.absent);
  return el("div", { class: "who" },
    el("span", { class: `status ${p.status}` }, STATUS[p.status] || p.status),
    ` · ICE ${p.ice || "—"}`, el("br"), quality(p), el("br"), sent(p), el("br"), delivered(p));
}

// Identity, guardian presence and recording, as the services report them into the live state.
const CHECKS = {
  identity: { verified: "已核验 verified", verifying: "核验中 verifying", failed: "未通过 failed",
    locked: "已锁定 locked", mismatch: "非本人 mismatch" },
  guardian: { present: "在镜头前 present", absent: "不在镜头前 absent" },
  recording: { on: "录制中 recording", off: "未录制 off", failed: "录制故障 failed",
    waiting: "等待存储 waiting for the store" },
};
const LABELS = { identity: "医生核验 Identity", guardian: "监护人 Guardian", recording: "录制 Recording" };
const BAD = new Set(["failed", "locked", "mismatch", "absent"]);

function checks(c) {
  const items = Object.keys(CHECKS).filter((k) => c[k]).map((k) =>
    el("div", { class: BAD.has(c[k]) ? "q poor" : "q" },
      `${LABELS[k]}: ${CHECKS[k][c[k]] || c[k]}`));
  return items.length ? el("div", { class: "who" }, ...items) : el("span", { class: "q" }, "—");
}

function render(snapshot) {
  const nodes = Object.entries(snapshot.nodes || {});
  $("nodes").replaceChildren(...nodes.map(([name, info]) =>
    el("span", { class: "node", title: info.url || "" }, `${name} · ${info.rooms ?? 0}`)));
  const rows = Object.entries(snapshot.consultations || {});
  $("summary").textContent = snapshot.live_state === "ok"
    ? `${rows.length} 个进行中 live · ${nodes.length} 个节点 nodes`
    : `实时状态不可用 Live state unavailable: ${snapshot.live_state}`;
  document.body.dataset.phase = "live";
  document.body.dataset.count = String(rows.length);
  if (!rows.length) {
    $("rows").replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "empty" }, "暂无 None")));
    return;
  }
  $("rows").replaceChildren(...rows.map(([cid, c]) => {
    const parts = c.participants || {};
    const end = el("button", { class: "danger", "data-cid": cid }, "结束 End");
    end.addEventListener("click", () => openEnd(cid));
    const state = c.lost ? "lost" : c.state;
    return el("tr", { "data-cid": cid },
      el("td", {}, el("code", {}, cid)),
      el("td", {}, el("span", { class: `state ${state}` },
        c.lost ? "节点失联 Node lost" : (STATES[c.state] || c.state))),
      el("td", {}, c.node || "—"),
      el("td", {}, participant(parts.doctor)),
      el("td", {}, participant(parts.guardian)),
      el("td", {}, checks(c)),
      el("td", {}, end));
  }));
}

function alert(message) {
  // Every alert has a kind and a bilingual text (core/alerts.py); the node says where.
  const text = [new Date().toLocaleTimeString(), message.kind, message.consultation,
    message.text, message.node && `@${message.node}`].filter(Boolean).join(" · ");
  const list = $("alerts");
  list.prepend(el("li", {}, text));
  while (list.children.length > 50) list.lastChild.remove();
}

function connect() {
  const source = new EventSource(`/api/ops/stream?token=${encodeURIComponent(token)}`);
  source.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "snapshot") render(message); else alert(message);
  };
  source.onerror = () => {
    document.body.dataset.phase = "reconnecting";
    $("summary").textContent = "连接中断，正在重连 Connection lost, reconnecting…";
  };
}

let ending = null;
function openEnd(cid) {
  ending = cid;
  $("end-cid").textContent = cid;
  $("end-error").textContent = "";
  $("end-reason").value = "";
  $("end-dialog").showModal();
}

$("end-form").addEventListener("submit", async (event) => {
  if (event.submitter && event.submitter.value !== "confirm") return;
  event.preventDefault();
  const response = await fetch(`/api/ops/consultations/${encodeURIComponent(ending)}/end`, {
    method: "POST",
    headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ reason: $("end-reason").value }),
  });
  if (response.ok) { $("end-dialog").close(); return; }
  const body = await response.json().catch(() => ({}));
  $("end-error").textContent = (body.error && body.error.message) || `HTTP ${response.status}`;
});

if (!token) {
  document.body.dataset.phase = "error";
  $("summary").textContent = "链接缺少访问令牌 The link has no access token (#token=…)";
} else {
  connect();
}
