"""The node's side of one participant's RTCPeerConnection.

The browser offers one audio and one video transceiver; the node answers sending the other
participant's media on them (RelayTrack) and feeding what it receives, still encoded, into this
participant's MediaSources. Bandwidth feedback crosses the node with the media: this participant's
REMB about the video it receives is kept on its `Link`, and the REMB the node sends it about the
video it sends is bounded by the other participant's `Link` (signaling/bandwidth.py).
VP8 and Opus only: the relay forwards frames as they are, so both sides must speak the same
codecs, and VP8 key frames are what the relay waits for.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from . import datagrams, fastpath, pacer, passthrough, twcc
from .bandwidth import Link, RembSender
from .budget import SendBudget
from .delay import FrameArrivals
from .media import MediaSource, RelayTrack
from .protocol import IceCandidate
from .receiveside import FeedbackSender
from .sendside import ONE_BYTE_IDS, SendSide

log = logging.getLogger(__name__)

KINDS = ("audio", "video")
passthrough.negotiate_transport_cc()
fastpath.install()
twcc.install()
datagrams.install()
CODECS = {"audio": ("audio/opus",), "video": ("video/VP8", "video/rtx")}


class MediaRefused(ValueError):
    """aiortc could not apply what the participant sent. signaling/sdp_check.py should have
    refused it first: this is the last resort that keeps aiortc's own exceptions (assertions,
    KeyErrors) from becoming an `internal` error."""


async def _applied(what: str, step: Awaitable[object]) -> None:
    try:
        await step
    except Exception as exc:
        log.warning("aiortc could not apply a participant's %s", what, exc_info=True)
        raise MediaRefused(f"the {what} could not be applied ({type(exc).__name__}: "
                           f"{str(exc)[:200]})") from exc


class Peer:
    def __init__(
        self,
        ice_servers: list[RTCIceServer],
        incoming: dict[str, MediaSource],
        outgoing: dict[str, MediaSource],
        on_state: Callable[[str], None],
        links: tuple[Link, Link],
        video_cap_bps: int,
    ) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers))
        self._incoming = incoming
        self._outgoing = outgoing
        self.link, self._other_link = links  # this participant's, the other participant's
        self.link.restart()
        self._video_cap = video_cap_bps
        self.relays: dict[str, RelayTrack] = {}
        self.retransmissions: passthrough.Retransmissions | None = None  # of the video sender
        self._remb: RembSender | None = None
        self._twcc: FeedbackSender | None = None
        self.sendside: SendSide | None = None  # once the video sender runs, if negotiated
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", lambda: on_state(self.pc.connectionState))

    def _on_track(self, track: object) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                self._feed(transceiver.receiver, self._incoming[transceiver.kind])

    def _feed(self, receiver: RTCRtpReceiver, source: MediaSource) -> None:
        # For the forwarding delay (signaling/delay.py).
        arrivals = FrameArrivals(passthrough.frame_rtp_timestamp(receiver))
        passthrough.on_rtp(receiver, arrivals.saw)
        passthrough.install(receiver,
                            lambda packet: source.publish(packet, arrivals.take(packet)))
        passthrough.release_promptly(receiver)
        if source.kind == "video":
            self._remb = RembSender(receiver, self.link, self._other_link, self._video_cap)
            self._twcc = FeedbackSender(receiver)
        upstream = source.attach(lambda: passthrough.send_pli(receiver))
        # The sender's clock for this stream, for the recorder's A/V sync (recorder/timing.py).
        frame_timestamp = passthrough.frame_timestamp_of(receiver)
        passthrough.on_sender_report(receiver, lambda ntp, rtp: source.sender_report(
            upstream, ntp, frame_timestamp(rtp)))

    async def answer(self, offer_sdp: str) -> str:
        await _applied("offer", self.pc.setRemoteDescription(
            RTCSessionDescription(offer_sdp, "offer")))
        kinds = {t.kind for t in self.pc.getTransceivers()}
        if kinds != set(KINDS):
            raise ValueError("the offer must have one audio and one video transceiver")
        for transceiver in self.pc.getTransceivers():
            kind = transceiver.kind
            capabilities = RTCRtpReceiver.getCapabilities(kind)
            preferred = [c for c in capabilities.codecs if c.mimeType in CODECS[kind]]
            transceiver.setCodecPreferences(preferred)
            budget = SendBudget(self.link, self._video_cap) if kind == "video" else None
            relay = self.relays[kind] = RelayTrack(self._outgoing[kind], budget)
            sender = self.pc.addTrack(relay)
            passthrough.on_keyframe_request(sender, self._outgoing[kind].request_keyframe)
            if budget is not None:
                paced = pacer.Pacer(budget.capacity_bps)
                relay.on_start = lambda sender=sender, paced=paced: self._start_video(
                    sender, paced)
                budget.socket_backlog = lambda sender=sender: passthrough.send_backlog(sender)
                self.retransmissions = passthrough.limit_retransmissions(sender,
                                                                         budget.congested)
                passthrough.on_feedback(
                    sender, self.link.report_downlink,
                    lambda lost, highest: self.link.report_counters(lost, highest,
                                                                    self._video_cap),
                    self._transport_feedback)
        await _applied("offer", self._answer())
        return self.pc.localDescription.sdp

    def _start_video(self, sender: RTCRtpSender, paced: pacer.Pacer) -> None:
        """The video sender runs: its transport and header extensions are final."""
        extension_id = passthrough.transport_sequence_id(sender)
        if extension_id in ONE_BYTE_IDS:  # None when not negotiated
            self.sendside = SendSide(self.link, extension_id)
        pacer.install(sender, paced, self.sendside.stamp if self.sendside else None)

    def _transport_feedback(self, fci: bytes) -> None:
        if self.sendside is not None:
            self.sendside.feedback(fci)

    async def _answer(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createAnswer())

    async def add_candidate(self, candidate: IceCandidate | None) -> None:
        """Checked by sdp_check.check_candidate first; aiortc's own errors are MediaRefused."""
        await _applied("candidate", self._add_candidate(candidate))

    async def _add_candidate(self, candidate: IceCandidate | None) -> None:
        if candidate is None:
            await self.pc.addIceCandidate(None)  # type: ignore[arg-type]
            return
        text = candidate.candidate
        parsed = candidate_from_sdp(text.removeprefix("candidate:"))
        parsed.sdpMid = candidate.sdp_mid
        parsed.sdpMLineIndex = candidate.sdp_mline_index
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        self.link.connected = False
        for feedback in (self._remb, self._twcc):
            if feedback is not None:
                feedback.stop()
        for relay in self.relays.values():
            relay.stop()
        for kind in KINDS:
            self._incoming[kind].detach()
        await self.pc.close()
