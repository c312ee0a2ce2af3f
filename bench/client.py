"""A participant without a browser: signaling over WebSocket plus one aiortc peer connection.

Used by the load generator and by the integration tests. It receives media without decoding
(the same pass-through hook the node uses) and counts frames, key frames and latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from bench.clip import Clip, ClipTrack, read_stamp, report_capture_clock
from core.vp8 import is_vp8_keyframe
from signaling import passthrough


@dataclass
class Received:
    frames: int = 0
    keyframes: int = 0
    bytes: int = 0
    first_at: float | None = None
    last_at: float | None = None
    latencies: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def add(self, packet: av.Packet, kind: str) -> None:
        now = time.monotonic()
        data = bytes(packet)
        self.frames += 1
        self.bytes += len(data)
        if kind == "video" and is_vp8_keyframe(data):
            self.keyframes += 1
        self.first_at = self.first_at or now
        self.last_at = now
        self.times.append(now)
        sent = read_stamp(data)
        if sent is not None:
            self.latencies.append(time.time() - sent)

    def fps_since(self, since: float) -> float:
        recent = [t for t in self.times if t >= since]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])


class CallClient:
    def __init__(self, base_url: str, token: str, clips: dict[str, Clip],
                 session: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.token = token
        self.clips = clips
        self.session = session
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pc: RTCPeerConnection | None = None
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.received = {"audio": Received(), "video": Received()}
        self.tracks: list[ClipTrack] = []
        # Stamp frames and send sender reports by capture time, as a browser does (bench/clip.py)
        self.capture_clock = False
        self.joined: dict[str, Any] = {}
        self.redirects: list[str] = []
        self._reader: asyncio.Task[None] | None = None
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def connect(self, timeout: float = 10, redirects: int = 3) -> dict[str, Any]:
        """Join, following a `redirect` to the node that hosts the consultation."""
        for _ in range(redirects + 1):
            ws_url = self.base_url.replace("http", "ws", 1) + "/ws"
            self.ws = await self.session.ws_connect(ws_url, params={"token": self.token},
                                                    timeout=aiohttp.ClientWSTimeout(ws_close=5))
            self.inbox = asyncio.Queue()
            self._reader = asyncio.create_task(self._read())
            await self.send({"type": "join", "protocol": 1})
            reply = await self.expect_one(("joined", "redirect", "error"), timeout)
            if reply["type"] == "joined":
                self.joined = reply
                return reply
            if reply["type"] == "error":
                raise ConnectionError(f"join refused: {reply}")
            self.redirects.append(reply["url"])
            await self.ws.close()
            self.base_url = reply["url"]
        raise ConnectionError(f"more than {redirects} redirects: {self.redirects}")

    async def rejoin(self, urls: list[str], timeout: float = 30) -> dict[str, Any]:
        """After losing the node: try the known nodes until one takes the consultation."""
        deadline = time.monotonic() + timeout
        while True:
            for url in urls:
                self.base_url = url
                try:
                    return await self.connect(timeout=5)
                except (aiohttp.ClientError, ConnectionError, TimeoutError, OSError) as exc:
                    last = exc
            if time.monotonic() > deadline:
                raise TimeoutError(f"no node took the consultation within {timeout} s: {last}")
            await asyncio.sleep(0.5)

    async def expect_one(self, kinds: tuple[str, ...], timeout: float) -> dict[str, Any]:
        message = await asyncio.wait_for(self.inbox.get(), timeout)
        while message["type"] not in kinds:
            if message["type"] == "closed":
                raise ConnectionError(f"socket closed before any of {kinds}: {message}")
            message = await asyncio.wait_for(self.inbox.get(), timeout)
        return message

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = frame.json()
            if message.get("type") == "answer":
                await self._answers.put(message)
            else:
                await self.inbox.put(message)
        await self.inbox.put({"type": "closed", "code": self.ws.close_code})

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(message)

    async def expect(self, kind: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        """The next message of `kind` (matching fields); others are skipped. Fails on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no '{kind}' {match or ''} message within {timeout} s")
            try:
                message = await asyncio.wait_for(self.inbox.get(), remaining)
            except TimeoutError:
                raise TimeoutError(
                    f"no '{kind}' {match or ''} message within {timeout} s") from None
            if message["type"] == kind and all(message.get(k) == v for k, v in match.items()):
                return message
            if message["type"] == "closed" and kind != "closed":
                raise ConnectionError(f"socket closed while waiting for '{kind}': {message}")

    async def start_media(self, timeout: float = 15) -> None:
        """A new peer connection (closing any old one), offer, answer."""
        if self.pc is not None:
            await self.pc.close()
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("track", lambda track: self._on_track(pc, track))
        for kind in ("audio", "video"):
            if kind in self.clips:
                track = ClipTrack(self.clips[kind], capture_stamps=self.capture_clock)
                self.tracks.append(track)
                sender = pc.addTrack(track)
                passthrough.on_keyframe_request(sender, track.request_keyframe)
                if self.capture_clock:
                    report_capture_clock(sender, track)
            else:
                pc.addTransceiver(kind, direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        await self.send({"type": "offer", "sdp": pc.localDescription.sdp})
        answer = await asyncio.wait_for(self._answers.get(), timeout)
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    def _on_track(self, pc: RTCPeerConnection, track: Any) -> None:
        for transceiver in pc.getTransceivers():
            if transceiver.receiver.track is track:
                stats = self.received[transceiver.kind]
                kind = transceiver.kind
                passthrough.install(transceiver.receiver,
                                    lambda p, s=stats, k=kind: p is not None and s.add(p, k))

    async def wait_connected(self, timeout: float = 15) -> None:
        assert self.pc is not None
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if self.pc.connectionState == "failed" or time.monotonic() > deadline:
                raise TimeoutError(
                    f"ICE/DTLS did not connect within {timeout} s "
                    f"(state {self.pc.connectionState}, ice {self.pc.iceConnectionState})")
            await asyncio.sleep(0.05)

    async def wait_frames(self, kind: str, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        start = self.received[kind].frames
        while self.received[kind].frames < start + count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"received {self.received[kind].frames - start} of {count} {kind} frames "
                    f"within {timeout} s")
            await asyncio.sleep(0.05)

    async def drop(self) -> None:
        """Vanish without a word: close the socket and the peer connection abruptly."""
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)

    async def close(self) -> None:
        await self.drop()
