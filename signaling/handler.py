"""The /ws endpoint: one WebSocket per participant, messages handled one at a time in order."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from core import consent, metrics, referral
from core.auth import CALL_ROLES, Claims, Role, authenticate, json_error
from core.cluster import Cluster, Home
from core.context import CONTEXT_KEY, NodeContext
from core.lifecycle import State, TransitionError
from core.live import LiveStateUnavailable
from core.logs import consultation_var
from core.store import Consultation, records
from core.store.events import safe_text

from . import protocol
from .background import spawn
from .protocol import (
    PROTOCOL_VERSION,
    Accept,
    Candidate,
    Consent,
    End,
    Join,
    Leave,
    Message,
    Offer,
    Ping,
    Prescribe,
    ProtocolError,
    Quality,
    Terminate,
    parse,
)
from .quality import QualityGate, relay
from .room import Room, close_soon
from .rooms import Rooms
from .sdp_check import SdpError, check_candidate, check_offer

log = logging.getLogger(__name__)

HARD_MESSAGE_LIMIT = 1024 * 1024  # past this aiohttp closes the socket (1009)
AUDITED_ERRORS_PER_CONNECTION = 20

# Every call socket until it is freed: tc_websockets_in_memory (issue 17, bench/soak.py).
_SOCKETS: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
metrics.WEBSOCKETS.set_function(lambda: len(_SOCKETS))

# `prescribe` during the call (issue 4: refused for under-6s without the guardian on camera):
# judged by guardian presence, wired by the node (server/node.py and server/prescribing.py).
Prescriber = Callable[[Room, str, str, Prescribe], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Signaling:
    """What a call socket works with: the node's base services, the rooms it hosts, the cluster
    that says which node hosts a consultation, and the prescriber."""

    ctx: NodeContext
    rooms: Rooms
    cluster: Cluster
    prescriber: Prescriber


SIGNALING_KEY = web.AppKey("signaling", Signaling)


class Connection:
    """One participant's WebSocket: turns protocol messages into room actions."""

    def __init__(self, signaling: Signaling, claims: Claims, ws: web.WebSocketResponse) -> None:
        self.ctx = signaling.ctx
        self.rooms = signaling.rooms
        self.cluster = signaling.cluster
        self.prescriber = signaling.prescriber
        self.claims = claims
        self.role = Role(claims.role)
        self.ws = ws
        self.cid = str(claims.consultation_id)
        self.room: Room | None = None
        self.errors = 0
        self.quality = QualityGate()  # issue 11: the page's own reception, at most 1/s

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.claims.subject}"

    async def run(self) -> None:
        try:
            async for frame in self.ws:
                if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self.handle(frame.data)
                elif frame.type == WSMsgType.ERROR:
                    log.info("websocket error for %s: %s", self.actor, self.ws.exception())
        finally:
            # aiohttp cancels this handler when the peer disconnects: the bookkeeping must
            # still happen, so it runs as its own task.
            if self.room is not None:
                spawn(self.room.connection_lost(self.role, self.ws, self._close_reason()),
                      "connection-lost")

    def _close_reason(self) -> str:
        code = self.ws.close_code
        return f"websocket closed ({code})" if code is not None else "websocket closed"

    async def handle(self, raw: str | bytes) -> None:
        ref = None
        message: Message | None = None
        try:
            message = parse(raw, self.ctx.settings.max_message_bytes)
            ref = message.id
            reply = await self.dispatch(message)
        except ProtocolError as exc:
            await self.refuse(exc)
            return
        except TransitionError as exc:
            await self.refuse(ProtocolError("bad_state", str(exc), ref=ref))
            return
        except Exception:
            # A fault of ours must not cost the participant the call: report it, keep going.
            log.exception("handling a %s message from %s failed", type(message).__name__,
                          self.actor)
            await self.refuse(ProtocolError("internal", "the node could not handle this "
                                            "message; it was logged", ref=ref))
            return
        if reply is not None:
            if ref is not None:
                reply["re"] = ref
            await self.ws.send_json(reply)
            if reply["type"] == "joined" and self.room is not None:
                # After `joined`: what the services tell a (re)joining participant follows it.
                for hook in self.rooms.on_joined:
                    await hook(self.room, self.role)

    async def refuse(self, error: ProtocolError) -> None:
        metrics.SIGNALING_ERRORS.labels(error.code).inc()
        self.errors += 1
        if self.errors <= AUDITED_ERRORS_PER_CONNECTION:
            try:
                await self.ctx.events.append(self.cid, "signaling.refused", self.actor,
                                             refusal_record(error))
            except Exception:  # the client still gets its answer; the socket stays up
                log.exception("could not audit a refused message of %s", self.cid)
        if not self.ws.closed:
            await self.ws.send_json(error.to_message())

    async def dispatch(self, message: Message) -> dict[str, Any] | None:
        if isinstance(message, Ping):
            return protocol.pong()
        if isinstance(message, Join):
            return await self.join(message)
        if self.room is None:
            raise ProtocolError("not_joined", "send 'join' first", ref=message.id)
        room = self.room
        if isinstance(message, Offer):
            try:
                check_offer(message.sdp)  # before the participant's current peer is replaced
                return protocol.answer(await room.offer(self.role, message.sdp))
            except SdpError as exc:
                raise ProtocolError(exc.code, f"offer refused: {exc}", "sdp", message.id) from None
            except ValueError as exc:
                raise ProtocolError("bad_sdp", f"offer refused: {exc}", "sdp", message.id) from None
        if isinstance(message, Candidate):
            try:
                if message.candidate is not None:
                    check_candidate(message.candidate.candidate)
                await room.add_candidate(self.role, message.candidate)
            except (LookupError, ValueError) as exc:
                raise ProtocolError("bad_field", f"candidate refused: {exc}", "candidate",
                                    message.id) from None
            return None
        if isinstance(message, Leave):
            self.room = None
            # In its own task (issue 17): the leave closes this very socket, and a handler that
            # aiohttp cancels as its socket closes would cut the departure short, the room kept.
            await asyncio.shield(spawn(room.leave(self.role, "left"), "leave"))
            return None
        if isinstance(message, Consent):
            return await self.consent(room, message)
        if isinstance(message, Quality):  # issue 11: excess reports are dropped, not refused
            await relay(room, self.quality, self.role, message)
            return None
        if self.role != Role.DOCTOR:
            raise ProtocolError("forbidden", f"only the doctor may send '{message.type}'",
                                "type", message.id)
        if isinstance(message, Accept):
            await self.ctx.lifecycle.accept(self.cid, self.actor)
            return None
        if isinstance(message, End):
            await self.ctx.lifecycle.transition(self.cid, State.ENDED, self.actor,
                                                message.reason, expected=State.ACTIVE)
            return None
        if isinstance(message, Terminate):
            to = message.referral
            target = referral.ReferralTarget(to.hospital, to.department, to.urgency,
                                             to.note or "")
            try:
                await referral.terminate(self.ctx, self.cid, self.actor, message.reason, target,
                                         message.text)
            except ValueError as exc:
                raise ProtocolError("bad_field", str(exc), ref=message.id) from None
            return None
        if isinstance(message, Prescribe):
            return await self.prescriber(room, self.cid, self.actor, message)
        raise ProtocolError("unknown_type", f"'{message.type}' is not handled", "type", message.id)

    async def consent(self, room: Room, message: Consent) -> dict[str, Any] | None:
        """The guardian accepts the consent text; both pages learn it (the doctor's waits on it)."""
        if self.role != Role.GUARDIAN:
            raise ProtocolError("forbidden", "only the guardian (or adult patient) gives consent",
                                "type", message.id)
        try:
            given, _ = await consent.record_consent(self.ctx.db, self.ctx.events, self.cid,
                                                    self.actor, message.version)
        except ValueError as exc:
            raise ProtocolError("bad_field", str(exc), "version", message.id) from None
        await room.broadcast(protocol.consent(given.version, given.accepted_at.isoformat()))
        return None

    async def join(self, message: Join) -> dict[str, Any] | None:
        if message.protocol != PROTOCOL_VERSION:
            raise ProtocolError("bad_protocol", f"this node speaks protocol {PROTOCOL_VERSION}",
                                "protocol", message.id)
        state = await self.ctx.lifecycle.state(self.cid)
        if state.final:
            raise ProtocolError("bad_state", f"the consultation is already {state}", ref=message.id)
        try:
            home = await self.cluster.home(self.cid)
            peers = await self.cluster.peer_urls()
        except LiveStateUnavailable:
            if self.rooms.get(self.cid) is None:
                raise ProtocolError("unavailable", "the live-state store is unavailable; "
                                    "calls in progress go on, new joins must retry shortly",
                                    ref=message.id) from None
            # A participant of a call hosted here comes back (a socket blip): its place is here,
            # and no other node can take the consultation while the store is away.
            home, peers = Home(here=True), []
        if home.url:
            await self.ws.send_json(protocol.redirect(home.url, message.id))
            close_soon(self.ws, 4002, "hosted on another node")
            return None
        if not home.here:
            raise ProtocolError("unavailable", "this consultation's node stopped answering; "
                                f"retry in {home.retry_after_s:.0f} s", ref=message.id)
        room = await self.rooms.open(self.cid, home.previous_node)
        rejoined = await room.join(self.role, self.claims.subject, self.ws,
                                   message.downlink_kbps)
        self.room = room
        state = await self.ctx.lifecycle.state(self.cid)
        return protocol.joined(
            protocol=PROTOCOL_VERSION,
            consultation={"id": self.cid, "state": str(state)},
            you={"role": str(self.role), "subject": self.claims.subject},
            participants=[p.public() for p in room.participants.values()],
            ice_servers=self.ice_servers(),
            rejoined=rejoined,
            grace_seconds=self.ctx.settings.rejoin_grace_s,
            nodes=peers,
            consent=await _consent_status(self.ctx, self.cid),
        )


    def ice_servers(self) -> list[dict[str, Any]]:
        """STUN servers, then TURN with credentials minted for this participant at this join.

        The TURN user is the consultation and the role (no person's id in the TURN server's log),
        enough to match its log lines with the consultation's events.
        """
        settings = self.ctx.settings
        user = f"{self.cid}.{self.role}"
        return [*settings.ice_servers_json, *settings.turn.ice_servers(user, time.time())]


def refusal_record(error: ProtocolError) -> dict[str, Any]:
    """The `signaling.refused` event's data. What the client sent may show in the message (a
    type, a field): escaped where no store or hash could take it, so the audit itself holds."""
    return {"code": error.code, "message": safe_text(error.message),
            "field": error.field and safe_text(error.field)}


async def _consent_status(ctx: NodeContext, cid: str) -> dict[str, Any]:
    given = await consent.consent_given(ctx.db, cid)
    return {"given": given is not None, "version": consent.CURRENT_VERSION,
            "at": given.accepted_at.isoformat() if given else None}


async def participant(request: web.Request, doing: str) -> tuple[Claims, Consultation]:
    """The token's claims and its consultation, if it is the doctor's or the guardian's of that
    consultation (401/403/404 with a JSON body otherwise): who may `doing`."""
    claims = authenticate(request, allow_query=True)
    if claims.role not in CALL_ROLES or not claims.consultation_id:
        raise json_error(403, "wrong_role", f"only the doctor and the guardian {doing}")
    consultation = await records.get_consultation(request.app[CONTEXT_KEY].db,
                                                  claims.consultation_id)
    if consultation is None:
        raise json_error(404, "no_consultation", "no such consultation")
    expected = consultation.doctor_id if claims.role == Role.DOCTOR else (
        consultation.guardian_id or consultation.patient_id)
    if claims.subject != expected:
        raise json_error(403, "not_a_participant",
                         f"this {claims.role} is not a participant of the consultation")
    return claims, consultation


async def websocket(request: web.Request) -> web.StreamResponse:
    """GET /ws?token=… — the token is checked before the upgrade (401/403 with a JSON body)."""
    signaling = request.app[SIGNALING_KEY]
    claims, _ = await participant(request, "join a call")
    consultation_var.set(claims.consultation_id)  # on every log line from here on
    ws = web.WebSocketResponse(heartbeat=15.0, max_msg_size=HARD_MESSAGE_LIMIT)
    _SOCKETS.add(ws)
    await ws.prepare(request)
    try:
        await Connection(signaling, claims, ws).run()
    finally:
        _release(ws, request)
    return ws


def _release(ws: web.WebSocketResponse, request: web.Request) -> None:
    """Let a finished call socket be freed as soon as aiohttp drops it, by reference counting.

    Two things of aiohttp 3.14's hold it past its end (private attributes, checked, so an upgrade
    that renames them fails loudly in tests/test_room_lifecycle.py):
    - the heartbeat, re-armed when data arrives after the close (the client's own close frame
      does): its timer held the closed socket, its request and transport ~22 s more, 1,657
      closed sockets in memory after a 2,000-cycle join/leave soak;
    - a reference cycle: the request's protocol keeps the socket's `_on_data_received` (its
      heartbeat reset) as `_data_received_cb` after the connection is lost, and the socket holds
      the request. Only a full collection freed that (a socket lives long enough to reach the
      oldest generation): 230-340 closed call sockets in memory throughout a soak.
    With the heartbeat stopped the callback does nothing, so it goes too.
    """
    protocol = request.protocol
    if not hasattr(ws, "_heartbeat") or not callable(getattr(ws, "_cancel_heartbeat", None)) \
            or not hasattr(protocol, "_data_received_cb"):
        raise RuntimeError("aiohttp's WebSocketResponse no longer has _heartbeat and "
                           "_cancel_heartbeat, or its RequestHandler _data_received_cb; check "
                           "signaling/handler.py's _release")
    ws._heartbeat = None
    ws._cancel_heartbeat()
    protocol._data_received_cb = None
