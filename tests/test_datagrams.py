"""signaling/datagrams.py's receive and send paths give aioice's and aiortc's own results."""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aioice import Candidate, stun
from aioice import ice as aioice_ice
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpRrPacket, RtpPacket

from bench.clip import ClipTrack
from bench.identity import until
from signaling import datagrams, ice, passthrough

from .offers import negotiate


def test_upstream_is_the_code_this_was_written_against() -> None:
    datagrams.check_upstream()


def test_install_refuses_when_upstream_changed(monkeypatch) -> None:
    async def recvfrom(self: Any) -> tuple[bytes, int]:  # a different body: another aioice
        return await self._queue.get()

    monkeypatch.setattr(aioice_ice.Connection, "recvfrom", recvfrom)
    with pytest.raises(RuntimeError, match=r"aioice\.ice\.Connection\.recvfrom"):
        datagrams.install()


class Routed:
    """What a StunProtocol hands its connection, in order (StunProtocol needs a running loop:
    the tests that use it are async)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def data_received(self, data: bytes, component: int) -> None:
        self.calls.append(("data", data, component))

    def request_received(self, message: stun.Message, addr: Any, protocol: Any) -> None:
        self.calls.append(("request", bytes(message), addr))


def route(datagram_received: Any, sent: list[bytes]) -> list[tuple[Any, ...]]:
    receiver = Routed()
    protocol = aioice_ice.StunProtocol(receiver)  # type: ignore[arg-type]
    protocol.local_candidate = Candidate(foundation="1", component=1, transport="udp",
                                         priority=1, host="127.0.0.1", port=5000, type="host")
    for datagram in sent:
        datagram_received(protocol, datagram, ("127.0.0.1", 6000, 0, 0))
    return receiver.calls


def media_datagrams(rng: random.Random) -> list[bytes]:
    """RTP (Opus, VP8, RTX), RTCP and DTLS records, of every size a call has."""
    out = []
    for _ in range(3000):
        packet = RtpPacket(payload_type=rng.choice((96, 97, 111)),
                           sequence_number=rng.randrange(1 << 16),
                           timestamp=rng.randrange(1 << 32), marker=rng.randrange(2),
                           ssrc=rng.randrange(1 << 32))
        packet.payload = rng.randbytes(rng.randrange(0, 1200))
        out.append(packet.serialize())
    out.append(bytes(RtcpRrPacket(ssrc=5)))
    out += [bytes([rng.randrange(20, 64)]) + rng.randbytes(rng.randrange(12, 300))
            for _ in range(300)]
    return out


def stun_datagrams() -> list[bytes]:
    request = stun.Message(message_method=stun.Method.BINDING,
                           message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = "abcd:efgh"
    request.attributes["PRIORITY"] = 12345
    request.add_message_integrity(b"0123456789012345678901")
    request.add_fingerprint()
    indication = stun.Message(message_method=stun.Method.BINDING,
                              message_class=stun.Class.INDICATION)
    return [bytes(request), bytes(indication), b"\x00\x01\x00\x00garbage", b"", b"\x40\x00"]


async def test_datagrams_reach_aioice_as_they_did() -> None:
    sent = media_datagrams(random.Random(7983)) + stun_datagrams()
    ours = route(datagrams.datagram_received, sent)
    assert ours == route(datagrams._upstream_datagram_received, sent)
    assert sum(call[0] == "request" for call in ours) == 1


async def test_a_media_datagram_is_never_taken_for_stun() -> None:
    """aioice checks neither STUN's two zero bits nor its magic cookie: a 20-byte RTP packet
    (payload type 1, sequence number 0) parses as a binding request there and is lost."""
    rtp = bytes(RtpPacket(payload_type=1, sequence_number=0, timestamp=0x2112A442,
                          ssrc=7).serialize()) + bytes(8)
    assert route(datagrams._upstream_datagram_received, [rtp])[0][0] == "request"
    assert route(datagrams.datagram_received, [rtp]) == [("data", rtp, 1)]


@asynccontextmanager
async def call(clips: dict[str, Any]) -> AsyncIterator[tuple[RTCPeerConnection,
                                                             RTCPeerConnection,
                                                             dict[str, list[bytes]]]]:
    """Two aiortc peers on loopback: `a` sends the clips, `b` keeps what it receives, encoded."""
    ice.use_host_addresses(["127.0.0.1"])
    a, b = RTCPeerConnection(), RTCPeerConnection()
    got: dict[str, list[bytes]] = {"audio": [], "video": []}

    def on_track(track: Any) -> None:
        for transceiver in b.getTransceivers():
            if transceiver.receiver.track is track:
                kind = transceiver.kind
                passthrough.install(transceiver.receiver, lambda packet, kind=kind: packet
                                    and got[kind].append(bytes(packet)))

    b.on("track", on_track)
    try:
        for kind in ("audio", "video"):
            a.addTrack(ClipTrack(clips[kind], stamp=False))
        await negotiate(a, b)
        yield a, b, got
    finally:
        await a.close()
        await b.close()
        ice.use_host_addresses([])


def dtls_of(pc: RTCPeerConnection) -> RTCDtlsTransport:
    return pc.getTransceivers()[0].receiver.transport


@pytest.mark.parametrize("path", ["upstream", "direct"])
async def test_a_call_gets_every_frame_and_its_rtcp(path: str, clips, monkeypatch) -> None:
    if path == "upstream":
        monkeypatch.setattr(aioice_ice.StunProtocol, "datagram_received",
                            datagrams._upstream_datagram_received)
        monkeypatch.setattr(RTCDtlsTransport, "start", datagrams._upstream_start)
    else:
        monkeypatch.setattr(aioice_ice.StunProtocol, "datagram_received",
                            datagrams.datagram_received)
        monkeypatch.setattr(RTCDtlsTransport, "start", datagrams._start)
    async with call(clips) as (a, b, got):
        await until(lambda: len(got["video"]) >= 40 and len(got["audio"]) >= 40, 15, "media")
        # Every frame whole and in order, as the clip has them (the receiver's jitter buffer
        # holds the latest one back).
        video = clips["video"].packets
        assert got["video"][:40] == [video[i % len(video)] for i in range(40)]
        audio = clips["audio"].packets
        assert got["audio"][:40] == [audio[i % len(audio)] for i in range(40)]
        # RTCP comes back the other way: b's receiver reports reach `a`'s senders.
        reports = [0]
        for transceiver in a.getTransceivers():
            passthrough.on_feedback(transceiver.sender, lambda bitrate: None,
                                    lambda lost, highest: reports.__setitem__(0, reports[0] + 1))
        await until(lambda: reports[0] >= 2, 10, "receiver reports")
        connection = dtls_of(b).transport._connection
        direct = isinstance(getattr(connection.data_received, "__self__", None),
                            datagrams.Inbound)
        assert direct == (path == "direct")
        assert (dtls_of(b).transport._send != connection.send) == (path == "direct")
        transport = [s for s in (await b.getStats()).values() if s.type == "transport"]
        assert transport and transport[0].packetsReceived > 80
        assert transport[0].bytesReceived > sum(map(len, got["video"]))


async def test_a_handler_that_suspends_keeps_the_packets_in_order(clips, monkeypatch) -> None:
    """aiortc's handlers never suspend today; if one does, the next datagrams wait behind it."""
    monkeypatch.setattr(aioice_ice.StunProtocol, "datagram_received", datagrams.datagram_received)
    monkeypatch.setattr(RTCDtlsTransport, "start", datagrams._start)
    async with call(clips) as (_, b, got):
        await until(lambda: len(got["video"]) >= 5, 15, "first frames")
        dtls = dtls_of(b)
        original = dtls._handle_rtp_data
        handled: list[tuple[int, int]] = []  # (ssrc, sequence number), in handling order
        running = [0]
        loop = asyncio.get_running_loop()
        held = [0]

        async def handle(data: bytes, arrival_time_ms: int) -> None:
            running[0] += 1
            assert running[0] == 1, "two packets handled at once"
            ssrc, sequence = struct.unpack("!I", data[8:12])[0], struct.unpack("!H", data[2:4])[0]
            handled.append((ssrc, sequence))
            if len(handled) % 25 == 1:  # now and then, wait for the loop to come round
                held[0] += 1
                later = loop.create_future()
                loop.call_later(0.03, later.set_result, None)
                await later
            await original(data, arrival_time_ms)
            running[0] -= 1

        monkeypatch.setattr(dtls, "_handle_rtp_data", handle)
        before = len(got["video"])
        await until(lambda: len(got["video"]) >= before + 30, 15, "frames after the hold")
        assert held[0] >= 3
        for ssrc in {s for s, _ in handled}:
            sequences = [n for s, n in handled if s == ssrc]
            assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(sequences)), sequences


class Received(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.put_nowait(data)


class OwnSend(aioice_ice.StunProtocol):
    """A protocol with its own `send_data`, as a future aioice's TURN might have."""

    sent: list[bytes]

    async def send_data(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append(data)


async def test_send_puts_on_the_wire_what_aioices_send_does() -> None:
    loop = asyncio.get_running_loop()
    connection = aioice_ice.Connection(ice_controlling=True)
    send = datagrams.sender(connection)
    with pytest.raises(ConnectionError):  # as aioice's: no nominated pair yet
        await send(b"x")
    with pytest.raises(ConnectionError):
        await connection.send(b"x")
    peer_transport, peer = await loop.create_datagram_endpoint(Received,
                                                               local_addr=("127.0.0.1", 0))
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: aioice_ice.StunProtocol(connection), local_addr=("127.0.0.1", 0))
    try:
        host, port = peer_transport.get_extra_info("sockname")
        remote = Candidate(foundation="2", component=1, transport="udp", priority=1,
                           host=host, port=port, type="host")
        remote._network_host = host  # as aioice sets it when it resolves the candidate
        connection._nominated[1] = aioice_ice.CandidatePair(protocol, remote)
        payloads = [RtpPacket(payload_type=96, sequence_number=i).serialize() + bytes(i)
                    for i in range(50)]
        for payload in payloads:
            await send(payload)
            await connection.send(payload)
        async with asyncio.timeout(5):
            got = [await peer.got.get() for _ in range(2 * len(payloads))]
        assert got == [p for p in payloads for _ in range(2)]
        # A protocol with its own send_data still gets every datagram.
        own = OwnSend(connection)
        own.sent = []
        connection._nominated[1] = aioice_ice.CandidatePair(own, remote)
        await send(b"\x80relayed")
        assert own.sent == [b"\x80relayed"]
    finally:
        transport.close()
        peer_transport.close()
