// Network change (issue 11): notice quickly that the media path to the node is dead, so the page
// can make a new peer connection by itself (aiortc has no ICE restart; the node takes a new
// `offer` on the same socket, see signaling/PROTOCOL.md "Reconnect").
//
// Dead means: connectionState 'failed'; or 'disconnected' for DISCONNECTED_MS; or nothing at
// all received on the transport for STALL_MS while 'connected' (the node sends RTCP receiver
// reports every second or so even when nobody else is there, so silence is not a quiet call);
// or, after the browser says the network changed (`online`, navigator.connection `change`), not
// 'connected' within CHANGE_MS. Chromium's own 'disconnected' comes ~6 s after an address
// vanished and 'failed' ~30 s: a family moving from Wi-Fi to 4G should not wait that long.

const DISCONNECTED_MS = 3000;
const CHANGE_MS = 3000;
const STALL_MS = 3000;
const STALL_CHECK_MS = 1000;

async function transportBytes(pc) {
  let bytes = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'transport') bytes += s.bytesReceived || 0;
  });
  return bytes;
}

// Calls `onDead(reason)` at most once for this pc; returns a function that stops watching.
export function watchMediaPath(pc, onDead) {
  let timer = 0;
  let done = false;
  const dead = (reason) => {
    if (done) return;
    done = true;
    stop();
    onDead(reason);
  };
  const later = (ms, reason) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (pc.connectionState !== 'connected') dead(reason);
    }, ms);
  };
  const onState = () => {
    const s = pc.connectionState;
    console.info('media connection', s);
    if (s === 'failed') dead('media connection failed');
    else if (s === 'disconnected') later(DISCONNECTED_MS, `media disconnected for ${DISCONNECTED_MS / 1000} s`);
    else if (s === 'connected') clearTimeout(timer);
  };
  const onChange = () => {
    // Only a path that was up can be lost by a network change; a new one is still connecting.
    if (pc.connectionState === 'connected' || pc.connectionState === 'disconnected') {
      later(CHANGE_MS, 'the network changed');
    }
  };
  let last = { bytes: -1, at: performance.now() };
  const stall = setInterval(async () => {
    if (pc.connectionState !== 'connected') {
      last = { bytes: -1, at: performance.now() };
      return;
    }
    const bytes = await transportBytes(pc).catch(() => -1);
    const now = performance.now();
    if (bytes !== last.bytes) last = { bytes, at: now };
    else if (now - last.at >= STALL_MS) dead(`nothing received for ${STALL_MS / 1000} s`);
  }, STALL_CHECK_MS);
  const connection = navigator.connection;
  pc.addEventListener('connectionstatechange', onState);
  window.addEventListener('online', onChange);
  connection?.addEventListener?.('change', onChange);
  function stop() {
    clearTimeout(timer);
    clearInterval(stall);
    pc.removeEventListener('connectionstatechange', onState);
    window.removeEventListener('online', onChange);
    connection?.removeEventListener?.('change', onChange);
  }
  return stop;
}
