"""Janus (Debian's `janus` 1.1.x, VideoRoom plugin) as the reference SFU for bench/relay.py.

The same load as through the node: each consultation is one VideoRoom room; each participant
publishes the clip tracks on one peer connection and receives the other participant's feed on a
second one (VideoRoom's publisher/subscriber model). Janus runs as its own process with a config
written to a temp dir: WebSocket transport on 127.0.0.1, ICE on one local address only (see
`local_address`), no STUN, every other plugin and transport disabled, so its CPU is the relay's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from bench.client import Received
from bench.clip import Clip, ClipTrack
from signaling import passthrough

JANUS = "janus"
INSTALL = "apt-get install -y janus"
LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
PLUGIN = "janus.plugin.videoroom"
KEEPALIVE_S = 20.0
VETH, VETH_ADDRESS = "tcbench", "10.254.77.1"  # only inside a private network namespace


def ensure_installed() -> str:
    """The janus binary, installing Debian's package if missing (as scripts/test-services.sh
    installs what the tests need); raises with the one command if it cannot."""
    found = shutil.which(JANUS)
    if found:
        return found
    print(f"bench: janus missing; running `{INSTALL}`", file=sys.stderr)
    result = subprocess.run(["bash", "-c", f"apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                                           f"{INSTALL} -qq"], stdout=sys.stderr, check=False)
    found = shutil.which(JANUS)
    if result.returncode or not found:
        raise RuntimeError(f"Janus is not installed and could not be installed; run `{INSTALL}`")
    return found


def _others(folder: str, keep: str) -> str:
    """Every library in Janus's `folder` except `keep`, for the config's `disable` list."""
    names = sorted(p.name for p in (LIB / folder).glob("libjanus_*.so"))
    return ",".join(n for n in names if n != keep)


def local_address() -> str:
    """A non-loopback IPv4 address of this machine for Janus's ICE.

    Janus gathers no candidates on a loopback interface, whatever its enforce list says. Traffic
    between two addresses of this machine still never leaves it (the kernel delivers it through
    its loopback path), so the clients and Janus use one such address. In a private network
    namespace (`unshare -n`, only `lo`), a veth pair is added for it.
    """
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        return line.split()[3].split("/")[0]
    if [name for _, name in socket.if_nameindex()] != ["lo"]:  # a private namespace: ours

        raise RuntimeError("no non-loopback IPv4 address for Janus's ICE on this machine")
    # A veth pair (these kernels have no `dummy`); Janus wants its interface up and running.
    for command in (["ip", "link", "add", VETH, "type", "veth", "peer", "name", f"{VETH}p"],
                    ["ip", "addr", "add", f"{VETH_ADDRESS}/32", "dev", VETH],
                    ["ip", "link", "set", f"{VETH}p", "up"],
                    ["ip", "link", "set", VETH, "up"]):
        subprocess.run(command, check=True)
    return VETH_ADDRESS


def write_config(directory: Path, ws_port: int, rtp_ports: tuple[int, int],
                 address: str) -> Path:
    """A config for one run: WebSocket API on 127.0.0.1, ICE on `address` only, no STUN,
    VideoRoom only. Returns janus.jcfg."""
    directory.mkdir(parents=True, exist_ok=True)
    main = directory / "janus.jcfg"
    main.write_text(f"""general: {{
    configs_folder = "{directory}"
    plugins_folder = "{LIB}/plugins"
    transports_folder = "{LIB}/transports"
    events_folder = "{LIB}/events"
    loggers_folder = "{LIB}/loggers"
    debug_level = 2
    server_name = "bench"
    session_timeout = 60
}}
media: {{
    rtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{address}"
    ignore_mdns = true
}}
plugins: {{
    disable = "{_others('plugins', 'libjanus_videoroom.so')}"
}}
transports: {{
    disable = "{_others('transports', 'libjanus_websockets.so')}"
}}
loggers: {{
    disable = "{_others('loggers', '')}"
}}
events: {{
    broadcast = false
}}
""")
    (directory / "janus.transport.websockets.jcfg").write_text(f"""general: {{
    json = "compact"
    ws = true
    ws_port = {ws_port}
    ws_ip = "127.0.0.1"
    wss = false
}}
admin: {{
    admin_ws = false
    admin_wss = false
}}
""")
    (directory / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return main


def start(config: Path, preexec: Any) -> subprocess.Popen:
    """`janus` with `config`; its log goes to our stderr (stdout carries only the JSON)."""
    return subprocess.Popen([ensure_installed(), "-F", str(config.parent), "-C", str(config),
                             "-o"], stdout=sys.stderr, stderr=sys.stderr,
                            stdin=subprocess.DEVNULL, preexec_fn=preexec)


async def wait_ready(process: subprocess.Popen, url: str, timeout: float) -> None:
    """Until Janus answers `info` on its WebSocket API."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"janus exited with code {process.returncode} before it was up")
            try:
                async with session.ws_connect(url, protocols=("janus-protocol",)) as ws:
                    await ws.send_json({"janus": "info", "transaction": "ready"})
                    reply = await ws.receive_json(timeout=2)
                    if reply.get("janus") == "server_info":
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"janus did not answer on {url} within {timeout:.0f} s")
            await asyncio.sleep(0.2)


class JanusError(RuntimeError):
    pass


class Session:
    """One Janus session over one WebSocket: requests by transaction, plugin events by handle."""

    _ids = itertools.count(1)

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.id: int | None = None
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.events: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self.trickles: dict[int, list[dict[str, Any]]] = {}
        self.up: dict[int, asyncio.Event] = {}  # handle -> Janus said `webrtcup`
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        self.ws = await self.http.ws_connect(self.url, protocols=("janus-protocol",))
        self._tasks.append(asyncio.create_task(self._read()))
        self.id = (await self.request({"janus": "create"}))["data"]["id"]
        self._tasks.append(asyncio.create_task(self._keepalive()))

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = frame.json()
            kind, transaction = message.get("janus"), message.get("transaction")
            future = self._replies.get(transaction) if transaction else None
            if kind == "ack" and future is not None and not future.done() \
                    and not transaction.startswith("async-"):
                future.set_result(message)  # a request answered by its ack (keepalive)
            elif kind in ("success", "error") and future is not None and not future.done():
                future.set_result(message)
            elif kind == "event" and "sender" in message:
                self.events.setdefault(message["sender"], asyncio.Queue()).put_nowait(message)
            elif kind == "webrtcup" and "sender" in message:
                self.up.setdefault(message["sender"], asyncio.Event()).set()
            elif kind == "trickle" and "sender" in message:
                self.trickles.setdefault(message["sender"], []).append(message["candidate"])
        for future in self._replies.values():
            if not future.done():
                future.set_exception(ConnectionError("Janus closed the WebSocket"))

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            await self.request({"janus": "keepalive"})

    async def request(self, body: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Send `body` (session id added) and wait for its success/error."""
        assert self.ws is not None
        transaction = f"t{next(self._ids)}"
        future = self._replies[transaction] = asyncio.get_running_loop().create_future()
        message = {**body, "transaction": transaction}
        if self.id is not None:
            message["session_id"] = self.id
        try:
            await self.ws.send_json(message)
            reply = await asyncio.wait_for(future, timeout)
        finally:
            del self._replies[transaction]
        if reply.get("janus") == "error":
            raise JanusError(f"{body.get('janus')}: {reply['error']}")
        return reply

    async def attach(self) -> int:
        reply = await self.request({"janus": "attach", "plugin": PLUGIN})
        handle: int = reply["data"]["id"]
        self.events.setdefault(handle, asyncio.Queue())
        self.up.setdefault(handle, asyncio.Event())
        return handle

    async def sync(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A plugin request Janus answers at once (create, destroy)."""
        reply = await self.request({"janus": "message", "handle_id": handle, "body": body})
        data: dict[str, Any] = reply["plugindata"]["data"]
        if "error" in data:
            raise JanusError(f"{body['request']}: {data['error']}")
        return data

    async def call(self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None,
                   timeout: float = 15) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """An asynchronous plugin request: its event (data, jsep)."""
        assert self.ws is not None
        message: dict[str, Any] = {"janus": "message", "handle_id": handle, "body": body,
                                   "session_id": self.id, "transaction": f"async-{next(self._ids)}"}
        if jsep is not None:
            message["jsep"] = jsep
        await self.ws.send_json(message)
        event = await asyncio.wait_for(self.events[handle].get(), timeout)
        data = event["plugindata"]["data"]
        if "error" in data:
            raise JanusError(f"{body['request']}: {data['error']}")
        return data, event.get("jsep")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                if self.id is not None:
                    await self.request({"janus": "destroy"}, timeout=5)
            await self.ws.close()


class JanusParticipant:
    """One participant: a publisher peer connection (the clips) and a subscriber one (the other
    participant's feed), received without decoding, counted like bench.client.CallClient."""

    def __init__(self, url: str, room: int, feed: int, clips: dict[str, Clip],
                 http: aiohttp.ClientSession) -> None:
        self.session = Session(url, http)
        self.room = room
        self.feed = feed
        self.clips = clips
        self.received = {"audio": Received(), "video": Received()}
        self.tracks: list[ClipTrack] = []
        self.publisher: RTCPeerConnection | None = None
        self.subscriber: RTCPeerConnection | None = None
        self._pub_handle = self._sub_handle = 0

    async def open(self) -> None:
        await self.session.open()
        self._pub_handle = await self.session.attach()

    async def create_room(self, record: bool, rec_dir: Path | None) -> None:
        body: dict[str, Any] = {"request": "create", "room": self.room, "publishers": 2,
                                "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0,
                                "fir_freq": 0, "notify_joining": False, "record": record}
        if record and rec_dir is not None:
            body["rec_dir"] = str(rec_dir)
        await self.session.sync(self._pub_handle, body)

    async def publish(self) -> None:
        """Join as publisher and send the clips (sendonly audio + video)."""
        await self.session.call(self._pub_handle, {"request": "join", "ptype": "publisher",
                                                   "room": self.room, "id": self.feed})
        self.publisher = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        for kind in ("audio", "video"):
            track = ClipTrack(self.clips[kind])
            self.tracks.append(track)
            sender = pc.addTransceiver(track, direction="sendonly").sender
            passthrough.on_keyframe_request(sender, track.request_keyframe)
        await pc.setLocalDescription(await pc.createOffer())
        _, jsep = await self.session.call(
            self._pub_handle, {"request": "publish", "audio": True, "video": True},
            {"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False})
        if jsep is None:
            raise JanusError("publish: no answer from Janus")
        await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "answer"))
        await self._add_trickled(pc, self._pub_handle)

    async def subscribe(self, feed: int) -> None:
        """Receive `feed` on a second handle: Janus offers, we answer."""
        self._sub_handle = await self.session.attach()
        _, jsep = await self.session.call(self._sub_handle, {
            "request": "join", "ptype": "subscriber", "room": self.room,
            "streams": [{"feed": feed}]})
        if jsep is None:
            raise JanusError("subscribe: no offer from Janus")
        self.subscriber = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("track", lambda track: self._on_track(pc, track))
        await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "offer"))
        await self._add_trickled(pc, self._sub_handle)
        await pc.setLocalDescription(await pc.createAnswer())
        await self.session.call(self._sub_handle, {"request": "start"},
                                {"type": "answer", "sdp": pc.localDescription.sdp,
                                 "trickle": False})

    async def _add_trickled(self, pc: RTCPeerConnection, handle: int) -> None:
        """Candidates Janus trickled after its SDP (half-trickle), if any."""
        for candidate in self.session.trickles.pop(handle, []):
            if candidate.get("completed") or "candidate" not in candidate:
                continue
            parsed = candidate_from_sdp(candidate["candidate"].removeprefix("candidate:"))
            parsed.sdpMid = candidate.get("sdpMid")
            parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
            await pc.addIceCandidate(parsed)

    def _on_track(self, pc: RTCPeerConnection, track: Any) -> None:
        for transceiver in pc.getTransceivers():
            if transceiver.receiver.track is track:
                stats, kind = self.received[transceiver.kind], transceiver.kind
                passthrough.install(transceiver.receiver,
                                    lambda p, s=stats, k=kind: p is not None and s.add(p, k))

    async def wait_published(self, timeout: float) -> None:
        """Janus lets others subscribe to a feed only once its media is up (`webrtcup`)."""
        await asyncio.wait_for(self.session.up[self._pub_handle].wait(), timeout)

    async def wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for pc in (self.publisher, self.subscriber):
            assert pc is not None
            while pc.connectionState != "connected":
                if pc.connectionState == "failed" or time.monotonic() > deadline:
                    raise TimeoutError(f"ICE/DTLS with Janus did not connect within {timeout} s "
                                       f"(state {pc.connectionState})")
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                with contextlib.suppress(Exception):
                    await pc.close()
        await self.session.close()


class JanusCall:
    """One consultation through Janus: a room, guardian and doctor each publishing and
    subscribing to the other. Same interface as bench.relay.Call."""

    def __init__(self, index: int, url: str, clips: dict[str, Clip],
                 http: aiohttp.ClientSession, record: bool, rec_dir: Path | None,
                 step_timeout: float) -> None:
        self.index = index
        room = 1000 + index
        self.guardian = JanusParticipant(url, room, 10 * room + 1, clips, http)
        self.doctor = JanusParticipant(url, room, 10 * room + 2, clips, http)
        self.record = record
        self.rec_dir = rec_dir
        self.timeout = step_timeout

    @property
    def clients(self) -> dict[str, JanusParticipant]:
        return {"guardian": self.guardian, "doctor": self.doctor}

    async def start(self) -> None:
        g, d, t = self.guardian, self.doctor, self.timeout
        await self._step("sessions", asyncio.gather(g.open(), d.open()))
        await self._step("create room", g.create_room(self.record, self.rec_dir))
        await self._step("publish", asyncio.gather(g.publish(), d.publish()))
        await self._step("publishers up", asyncio.gather(g.wait_published(t),
                                                         d.wait_published(t)))
        await self._step("subscribe", asyncio.gather(g.subscribe(d.feed), d.subscribe(g.feed)))
        await self._step("ICE/DTLS", asyncio.gather(g.wait_connected(t), d.wait_connected(t)))

    async def _step(self, what: str, step: Any) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await step
        except Exception as exc:
            raise RuntimeError(f"consultation {self.index} (Janus), {what}: "
                               f"{type(exc).__name__}: {exc}") from exc

    async def end(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), self.timeout)
