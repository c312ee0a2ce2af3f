"""The node's SRTP datagrams between aioice and aiortc with fewer steps, both ways.

For each RTP or RTCP datagram the node receives, upstream aioice and aiortc

1. try `stun.parse_message` on it in aioice's `StunProtocol.datagram_received`, which raises and
   catches a ValueError for every media packet (1.0 µs each, measured here), then
2. put it in the ICE connection's asyncio.Queue, from which the DTLS transport's receive task,
   woken through a future and the loop's ready queue, takes it one loop iteration later to
   unprotect, parse and route it (3.6 µs a datagram more than handling it at once).

RFC 7983 demultiplexes by the first byte: STUN is 0–3, DTLS 20–63, RTP and RTCP 128–191, so
`datagram_received` here hands DTLS and RTP/RTCP datagrams on without the STUN parse (STUN, and
anything else, still goes to aioice's own). And once the DTLS transport is connected, its ICE
connection's `data_received` unprotects and handles each SRTP/SRTCP datagram right there, in
the same order and with the same steps as aiortc's `RTCDtlsTransport._recv_next` (statistics,
arrival time, unprotect, `_handle_rtp_data` / `_handle_rtcp_data`); DTLS records (and the
connection's close) still go through the queue to aiortc's task. ICE consent checks, RTCP,
NACK/RTX, PLI and bandwidth feedback are aiortc's own code, called the same way.

Each datagram aiortc sends goes through three more coroutines of aioice's (`Connection.send`,
`Connection.sendto`, `StunProtocol.send_data`) before the socket's `sendto`; the connected DTLS
transport's ICE transport sends through `send` here instead, which does what those three do:
the nominated pair of component 1 (ConnectionError without one), its protocol's transport,
`sendto` to the pair's remote address. A TURN relay's protocol is a StunProtocol too, whose
transport does the TURN framing.

aiortc's handlers are coroutines that finish without suspending (every send under them is a
non-blocking `sendto`); if one ever suspends, a task finishes it and the datagrams that arrive
meanwhile wait behind it, so packets are still handled one at a time, in order. A handler that
raises ends the transport's receiving as it would upstream (where the receive task dies).

`install` swaps both in process-wide, after checking that the upstream functions it replaces or
follows are, to the character, the ones this was written against (aioice 0.13.0, aiortc 1.16.0):
after an upgrade the node refuses to start until this module is checked against the new code.
tests/test_datagrams.py proves the results are upstream's.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import pylibsrtp
from aioice import ice
from aiortc import clock
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtp import is_rtcp

from .background import spawn

log = logging.getLogger(__name__)

# sha256 of the source of each upstream function replaced or followed here (aioice 0.13.0,
# aiortc 1.16.0): the first 16 hex digits.
EXPECTED_SOURCE = {
    "aioice.ice.StunProtocol.datagram_received": "ff4c8b910d45fb3a",
    "aioice.ice.Connection.data_received": "5631b17fab717d6b",
    "aioice.ice.Connection.recvfrom": "676acc01e4a9a9da",
    "aiortc.rtcdtlstransport.RTCDtlsTransport._recv_next": "998076720c05aa13",
    "aiortc.rtcdtlstransport.RTCDtlsTransport.start": "3b3522667fe0a3da",
    "aioice.ice.Connection.send": "8f91d54578f0ca74",
    "aioice.ice.Connection.sendto": "bf162ec03bdce2cc",
    "aioice.ice.StunProtocol.send_data": "8bfbce074a897482",
    "aiortc.rtcicetransport.RTCIceTransport.__init__": "b11403aba1c3a32b",
}

_upstream_datagram_received = ice.StunProtocol.datagram_received
_upstream_start = RTCDtlsTransport.start
_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
_RX_PACKETS = "_RTCDtlsTransport__rx_packets"


def _upstream_functions() -> dict[str, Callable[..., Any]]:
    return {
        "aioice.ice.StunProtocol.datagram_received": _upstream_datagram_received,
        "aioice.ice.Connection.data_received": ice.Connection.data_received,
        "aioice.ice.Connection.recvfrom": ice.Connection.recvfrom,
        "aiortc.rtcdtlstransport.RTCDtlsTransport._recv_next": RTCDtlsTransport._recv_next,
        "aiortc.rtcdtlstransport.RTCDtlsTransport.start": _upstream_start,
        "aioice.ice.Connection.send": ice.Connection.send,
        "aioice.ice.Connection.sendto": ice.Connection.sendto,
        "aioice.ice.StunProtocol.send_data": ice.StunProtocol.send_data,
        "aiortc.rtcicetransport.RTCIceTransport.__init__": RTCIceTransport.__init__,
    }


def source_digest(function: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def check_upstream() -> None:
    """Raise unless aioice and aiortc have exactly the code this module was written against."""
    for name, function in _upstream_functions().items():
        try:
            digest = source_digest(function)
        except (OSError, TypeError) as exc:
            raise RuntimeError(f"cannot read the source of {name}: {exc}") from exc
        if digest != EXPECTED_SOURCE[name]:
            raise RuntimeError(f"{name} is not the code signaling/datagrams.py was written against "
                               f"(source sha256 {digest}…, expected {EXPECTED_SOURCE[name]}…); "
                               "check the module against the installed aioice/aiortc")


def is_media(first_byte: int) -> bool:
    """DTLS (20–63) or RTP/RTCP (128–191) by RFC 7983: never a STUN message."""
    return 127 < first_byte < 192 or 19 < first_byte < 64


def datagram_received(self: ice.StunProtocol, data: bytes | str, addr: tuple[Any, ...]) -> None:
    """aioice's `StunProtocol.datagram_received`, without the STUN parse of media datagrams."""
    if data and is_media(data[0]):  # type: ignore[arg-type]
        self.receiver.data_received(data, self.local_candidate.component)  # type: ignore[arg-type]
        return
    _upstream_datagram_received(self, data, addr)


class _Resumed:
    """Awaitable that carries on a coroutine already stepped by hand (whose step gave `yielded`),
    as `await coroutine` would have from there: what it yields goes to the awaiting task, and
    what the task sends or throws goes back into it."""

    def __init__(self, coroutine: Coroutine[Any, Any, None], yielded: Any) -> None:
        self._coroutine = coroutine
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        yielded = self._yielded
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:  # cancellation included: the coroutine gets it
                try:
                    yielded = self._coroutine.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    yielded = self._coroutine.send(sent)
                except StopIteration:
                    return


class Inbound:
    """Handles one connected DTLS transport's SRTP/SRTCP datagrams as its ICE connection gets
    them: stands in for that connection's `data_received`."""

    def __init__(self, dtls: RTCDtlsTransport, connection: ice.Connection) -> None:
        self._dtls = dtls
        self._connection = connection
        self._queue: asyncio.Queue[Any] = connection._queue
        self._backlog: deque[bytes] | None = None  # while a suspended handler finishes
        self._failed = False

    def data_received(self, data: bytes, component: int) -> None:
        dtls = self._dtls
        # Media once SRTP is up, unless the queue still holds datagrams to go first (those that
        # came before this was attached, or a DTLS record); all else as aioice does it.
        if not (data and 127 < data[0] < 192 and dtls._state is State.CONNECTED
                and not self._failed and dtls._rx_srtp is not None and not self._queue.qsize()):
            self._queue.put_nowait((data, component))
            return
        if self._backlog is not None:
            self._backlog.append(data)
            return
        coroutine = self._handle(data)
        try:
            yielded = coroutine.send(None)
        except StopIteration:
            return
        except BaseException as exc:
            self._fail(exc)
            return
        self._backlog = deque()
        spawn(self._finish(coroutine, yielded), "srtp-receive")

    async def _handle(self, data: bytes) -> None:
        """The SRTP branch of aiortc's `RTCDtlsTransport._recv_next`, step for step."""
        dtls = self._dtls
        setattr(dtls, _RX_BYTES, getattr(dtls, _RX_BYTES) + len(data))
        setattr(dtls, _RX_PACKETS, getattr(dtls, _RX_PACKETS) + 1)
        arrival_time_ms = clock.current_ms()
        try:
            if is_rtcp(data):
                data = dtls._rx_srtp.unprotect_rtcp(data)
                await dtls._handle_rtcp_data(data)
            else:
                data = dtls._rx_srtp.unprotect(data)
                await dtls._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)
        except pylibsrtp.Error as exc:
            log.debug("x SRTP unprotect failed: %s", exc)

    async def _finish(self, coroutine: Coroutine[Any, Any, None], yielded: Any) -> None:
        try:
            await _Resumed(coroutine, yielded)
            while self._backlog and not self._failed:
                await self._handle(self._backlog.popleft())
        except BaseException as exc:
            self._fail(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._backlog = None

    def _fail(self, exc: BaseException) -> None:
        """As upstream, where an exception out of a handler ends the DTLS transport's receive
        task (a ConnectionError after telling its receivers): stop taking datagrams and end
        that task the way a closed ICE connection does."""
        if not isinstance(exc, ConnectionError | asyncio.CancelledError):
            log.error("handling an SRTP datagram failed; the transport stops receiving",
                      exc_info=exc)
        self._failed = True
        self._queue.put_nowait(None)


def sender(connection: ice.Connection) -> Callable[[bytes], Coroutine[Any, Any, None]]:
    """aioice's `Connection.send` for `connection`, in one step instead of four."""
    nominated = connection._nominated
    upstream_send_data = ice.StunProtocol.send_data

    async def send(data: bytes) -> None:
        pair = nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        protocol = pair.protocol
        if type(protocol).send_data is not upstream_send_data:  # not aioice's own protocol
            await protocol.send_data(data, pair.remote_addr)
            return
        protocol.transport.sendto(data, pair.remote_addr)

    return send


def attach(dtls: RTCDtlsTransport) -> Inbound:
    """Handle `dtls`'s SRTP datagrams on arrival, and send its datagrams straight to the socket,
    from now on. It must be connected."""
    ice_transport = dtls.transport
    connection = getattr(ice_transport, "_connection", None)
    if not isinstance(connection, ice.Connection) or not isinstance(
            getattr(connection, "_queue", None), asyncio.Queue) or not isinstance(
            getattr(connection, "_nominated", None), dict) or getattr(
            ice_transport, "_send", None) != connection.send:
        raise RuntimeError("aiortc's RTCIceTransport no longer has an aioice Connection with its "
                           "_queue and _nominated, sending through its `send`; check "
                           "signaling/datagrams.py against the installed aiortc")
    inbound = Inbound(dtls, connection)
    connection.data_received = inbound.data_received  # type: ignore[method-assign]
    ice_transport._send = sender(connection)
    return inbound


async def _start(self: RTCDtlsTransport, remoteParameters: Any) -> None:
    await _upstream_start(self, remoteParameters)
    if self._state is State.CONNECTED:
        attach(self)


def install() -> None:
    """Use the direct receive path in this process from now on. Idempotent."""
    check_upstream()
    ice.StunProtocol.datagram_received = datagram_received  # type: ignore[method-assign]
    RTCDtlsTransport.start = _start  # type: ignore[method-assign]
