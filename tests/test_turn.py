"""A guardian who can reach the node only through TURN: a real Chromium on the real call page, a
real coturn with the secret the node mints credentials from, an aiortc doctor on the other side.

    test namespace (pytest, node, coturn, doctor)          guardian's namespace (Chromium)
      10.201.0.1/24  node's HTTP/WebSocket, TURN  --veth--  10.201.0.2/24 (no other route)
      10.202.0.1/32  the node's only ICE host address: unroutable from the guardian's side

So the guardian's only way to the node's media is a relay allocated on the TURN server. The test
checks that claim itself: the page's selected candidate pair is a `relay` one, and a datagram
from the guardian's namespace to each of the node's ICE candidates fails. The page is given the
TURN server's UDP and TCP URLs, as in production, and a policy-routing rule in the guardian's
namespace refuses one of the two transports to the TURN port: with UDP refused (a hospital
firewall) TURN over TCP is what works.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.chromium import launch_chromium, remote_video_progress, wait_for_body_data
from bench.faces import ADULT_A, make_y4m
from core.auth import Role
from core.config.turn import TurnConfig
from netlab import Namespace

from .coturn import Coturn
from .netns import veth
from .node_fixtures import Node, node_settings, start_node

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "turn"

SIGNAL_IP = "10.201.0.1"  # the node's HTTP/WebSocket and the TURN server
GUARDIAN_IP = "10.201.0.2"
MEDIA_IP = "10.202.0.1"  # the node's media (ICE host candidates)

pytestmark = pytest.mark.browser

# Keeps every RTCPeerConnection the page makes and the TURN errors it reports, without touching
# the page's code.
_WATCH_PEERS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.__iceErrors = [];
  window.__states = [];
  window.RTCPeerConnection = class extends Native {
    constructor(config) {
      super(config);
      window.__pcs.push(this);
      this.addEventListener('icecandidateerror', (e) => window.__iceErrors.push(
        {url: e.url, code: e.errorCode, text: e.errorText}));
      this.addEventListener('connectionstatechange', () => window.__states.push(
        this.connectionState));
    }
  };
})();
"""

_SELECTED_PAIR = """
async (index) => {
  const pc = window.__pcs.at(index);
  if (!pc) return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      pair = stats.get(s.selectedCandidatePairId);
    }
  });
  const local = pair && stats.get(pair.localCandidateId);
  const remote = pair && stats.get(pair.remoteCandidateId);
  const gathered = [];
  stats.forEach((s) => { if (s.type === 'local-candidate') gathered.push(s.candidateType); });
  return {
    local: local && {type: local.candidateType, relayProtocol: local.relayProtocol || null,
                     url: local.url || null},
    remote: remote && {type: remote.candidateType, address: remote.address, port: remote.port},
    bytesSent: pair ? pair.bytesSent : 0, bytesReceived: pair ? pair.bytesReceived : 0,
    gathered, iceServers: pc.getConfiguration().iceServers,
    remoteSdp: pc.remoteDescription ? pc.remoteDescription.sdp : '',
    gathering: pc.iceGatheringState, connection: pc.connectionState,
  };
}
"""

# Run inside the guardian's namespace: one datagram to each address; prints the errno or 0.
_PROBE = """
import json, socket, sys
result = {}
for host, port in json.loads(sys.argv[1]):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(b"probe", (host, port))
            result[f"{host}:{port}"] = 0
        except OSError as exc:
            result[f"{host}:{port}"] = exc.errno
print(json.dumps(result))
"""


@dataclass
class TurnOnlyNet:
    guardian: Namespace
    coturn: Coturn

    def probe_udp(self, targets: list[tuple[str, int]]) -> dict[str, int]:
        """errno of a UDP send from the guardian's namespace to each target (0: it went out)."""
        return json.loads(self.guardian.run(sys.executable, "-c", _PROBE, json.dumps(targets)))


@pytest.fixture
def turn_only_net(tmp_path: Path) -> Iterator[TurnOnlyNet]:
    with ExitStack() as stack:
        guardian = stack.enter_context(Namespace("guardian"))
        stack.enter_context(veth("tcturn0", [f"{SIGNAL_IP}/24", f"{MEDIA_IP}/32"], guardian,
                                 "eth0", [f"{GUARDIAN_IP}/24"]))
        coturn = stack.enter_context(Coturn(tmp_path / "coturn", ip=SIGNAL_IP,
                                            peers=(MEDIA_IP,)))
        yield TurnOnlyNet(guardian, coturn)


@asynccontextmanager
async def turn_node(tmp_path: Path, net: TurnOnlyNet, secret: str) -> AsyncIterator[Node]:
    turn = TurnConfig(urls=net.coturn.urls("udp", "tcp"), secret=secret)
    settings = node_settings(tmp_path / "node", host=SIGNAL_IP, ice_host_addresses=[MEDIA_IP],
                             turn=turn)
    async with start_node(settings) as node:
        yield node


@asynccontextmanager
async def guardian_browser(tmp: Path, artifacts: Path, net: TurnOnlyNet, node: Node):
    """Chromium in the guardian's namespace. The page is plain http on a private address, which
    is not a secure context (no camera): the flag makes this one origin count as secure."""
    camera = make_y4m(tmp / "guardian.y4m", ADULT_A, seconds=4)
    async with launch_chromium(
            camera, artifacts, prefix=net.guardian.prefix,
            extra_args=[f"--unsafely-treat-insecure-origin-as-secure={node.url}"]) as browser:
        yield browser


async def _guardian_page(browser, node: Node, booking):
    page = await browser.new_page("guardian")
    await page.add_init_script(_WATCH_PEERS)
    await page.goto(booking.guardian_link.replace(node.settings.public_url, node.url))
    await page.check("#consent-check")
    await page.click("#join-btn")
    await wait_for_body_data(page, "state", "waiting", timeout_s=20)
    return page


async def _wait_until(page, condition: str, failure: str, timeout_s: float) -> None:
    try:
        await page.wait_for_function(condition, timeout=timeout_s * 1000, polling=100)
    except Exception:
        seen = await page.evaluate("({states: window.__states, iceErrors: window.__iceErrors})")
        raise AssertionError(f"{failure} within {timeout_s:.0f} s: {seen}") from None


def _node_candidates(sdp: str) -> list[tuple[str, int]]:
    found = set()
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            found.add((parts[4], int(parts[5])))
    return sorted(found)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_guardian_reaches_the_node_only_through_turn(
        tmp_path: Path, turn_only_net: TurnOnlyNet, clips, transport: str) -> None:
    net = turn_only_net
    # The page is given both URLs; the guardian's network lets only one transport through.
    blocked = "tcp" if transport == "udp" else "udp"
    net.guardian.run("ip", "rule", "add", "to", SIGNAL_IP, "ipproto", blocked, "dport",
                    str(net.coturn.port), "prohibit")
    async with turn_node(tmp_path, net, net.coturn.secret) as node, \
            guardian_browser(tmp_path, ARTIFACTS / transport, net, node) as browser:
        booking = await node.book()
        cid = booking.consultation_id
        page = await _guardian_page(browser, node, booking)
        doctor = node.client(node.token(Role.DOCTOR, booking.doctor_id, cid), clips)
        try:
            await doctor.connect()
            await doctor.start_media()
            await doctor.wait_connected(timeout=20)
            await wait_for_body_data(page, "media", "connected", timeout_s=30)
            await remote_video_progress(page, timeout_s=20)  # the doctor's picture, via TURN
            await doctor.wait_frames("video", 20, timeout=20)  # and the guardian's, back
        finally:
            await doctor.close()
        seen = await page.evaluate(_SELECTED_PAIR, -1)

    assert seen["local"] == {"type": "relay", "relayProtocol": transport,
                             "url": f"turn:{SIGNAL_IP}:{net.coturn.port}?transport={transport}"}, (
        seen["local"], f"turnserver log:\n{net.coturn.tail()}")
    assert seen["remote"]["address"] == MEDIA_IP, seen["remote"]
    assert seen["bytesSent"] > 50_000 and seen["bytesReceived"] > 50_000, seen
    [server] = seen["iceServers"]
    expiry, user = server["username"].split(":", 1)
    assert user == f"{cid}.guardian" and int(expiry) > time.time() + 3600
    assert "credential" in server and net.coturn.secret not in json.dumps(seen["iceServers"])

    # The claim the test rests on: nothing of the node's media is reachable directly.
    node_candidates = _node_candidates(seen["remoteSdp"])
    assert node_candidates and {h for h, _ in node_candidates} == {MEDIA_IP}, node_candidates
    unreachable = net.probe_udp(node_candidates)
    assert all(errno != 0 for errno in unreachable.values()), unreachable
    turn_by_udp = net.probe_udp([(SIGNAL_IP, net.coturn.port)])[f"{SIGNAL_IP}:{net.coturn.port}"]
    assert (turn_by_udp == 0) == (transport == "udp"), turn_by_udp


async def test_credentials_from_another_secret_get_no_relay_and_no_call(
        tmp_path: Path, turn_only_net: TurnOnlyNet, clips) -> None:
    net = turn_only_net
    async with turn_node(tmp_path, net, "not-the-turn-servers-secret") as node, \
            guardian_browser(tmp_path, ARTIFACTS / "wrong-secret", net, node) as browser:
        booking = await node.book()
        cid = booking.consultation_id
        page = await _guardian_page(browser, node, booking)
        doctor = node.client(node.token(Role.DOCTOR, booking.doctor_id, cid), clips)
        try:
            await doctor.connect()
            await doctor.start_media()
            await doctor.wait_connected(timeout=20)  # the doctor's own path is direct
            # Chromium reports the TURN server's refusal (401), and then gives the connection up
            # (the page goes on to reconnect, with the same outcome).
            await _wait_until(page, "window.__iceErrors.some(e => e.code === 401)",
                              "Chromium reported no 401 from the TURN server", 20)
            await _wait_until(page, "window.__states.includes('failed')",
                              "the page's peer connection did not fail", 30)
            seen = await page.evaluate(_SELECTED_PAIR, 0)
            states = await page.evaluate("window.__states")
            errors = await page.evaluate("window.__iceErrors")
        finally:
            await doctor.close()
    assert "connected" not in states, states
    assert "relay" not in seen["gathered"], seen["gathered"]
    assert any(e["code"] == 401 and e["url"].startswith("turn:") for e in errors), errors
    # coturn saw the participant's credential, refused it, and never allocated a relay.
    log = net.coturn.log.read_text()
    refused = [line for line in log.splitlines()
               if f"{cid}.guardian>: incoming packet message processed, error 401" in line]
    assert refused and "ALLOCATE processed, success" not in log, net.coturn.tail()
