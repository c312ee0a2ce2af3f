"""Shared by the recording tests: run a consultation with real aiortc clients, read segments."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

from bench.client import CallClient
from bench.clip import ClipTrack, read_stamp
from core.store.recordings import RecordingSegment
from recorder import Recorder
from recorder.index import segments
from recorder.service import RECORDER_KEY

from .clinical_helpers import give_consent
from .node_fixtures import Node


def recorder_of(node: Node) -> Recorder:
    return node.app[RECORDER_KEY]


async def start_call(node: Node, clips, capture_clock: bool = False,
                     before_accept: Callable[[CallClient, CallClient], None] | None = None,
                     ) -> tuple[str, CallClient, CallClient]:
    """Both sides joined with media, consent given, the doctor accepted: the call is active.

    `capture_clock`: both senders stamp and report by capture time, as browsers do
    (bench/clip.py); `before_accept(guardian, doctor)` runs just before the recording starts."""
    booking = await node.book()
    guardian = node.client(booking.guardian_link.split("#token=")[1], clips)
    doctor = node.client(booking.doctor_link.split("#token=")[1], clips)
    guardian.capture_clock = doctor.capture_clock = capture_clock
    await guardian.connect()
    await guardian.start_media()
    await doctor.connect()
    await doctor.start_media()
    await doctor.wait_connected()
    await guardian.wait_connected()
    for side in (guardian, doctor):
        await side.wait_frames("video", 10)
    await give_consent(guardian, doctor)
    if before_accept is not None:
        before_accept(guardian, doctor)
    await doctor.send({"type": "accept"})
    await guardian.expect("state", state="active")
    return booking.consultation_id, guardian, doctor


async def end_call(node: Node, cid: str, guardian: CallClient, doctor: CallClient) -> None:
    """The doctor ends the call; returns once the recorder has stored its last segments."""
    await doctor.send({"type": "end", "reason": "completed"})
    await guardian.expect("state", state="ended")
    await guardian.expect("closed")
    await doctor.expect("closed")
    await wait_event(node, cid, "recording.stopped", timeout=15)


async def wait_event(node: Node, cid: str, kind: str, timeout: float) -> dict:
    found: list[dict] = []

    async def seen() -> bool:
        found[:] = [e for e in await node.events(cid) if e["kind"] == kind]
        return bool(found)

    try:
        await wait_for(seen, timeout, f"no {kind} event")
    except TimeoutError as exc:
        kinds = [e["kind"] for e in await node.events(cid)]
        raise TimeoutError(f"{exc}; events: {kinds}") from None
    return found[0]


@dataclass
class Played:
    """A decrypted segment as a player sees it, with the senders' stamps per kind."""

    duration_s: float
    packets: dict[str, int]
    # (seconds on the consultation clock, sender's wall-clock stamp) per kind
    stamps: dict[str, list[tuple[float, float]]]


def decrypt_to(recorder: Recorder, seg: RecordingSegment, path: Path) -> Path:
    path.write_bytes(b"".join(recorder.decryptor(seg).read()))
    return path


def play(recorder: Recorder, seg: RecordingSegment) -> Played:
    with tempfile.TemporaryDirectory() as tmp:
        path = decrypt_to(recorder, seg, Path(tmp) / "seg.webm")
        with av.open(str(path)) as container:
            kinds = {s.index: s.type for s in container.streams}
            packets: dict[str, int] = {}
            stamps: dict[str, list[tuple[float, float]]] = {"audio": [], "video": []}
            for packet in container.demux():
                if not packet.size:
                    continue
                kind = kinds[packet.stream_index]
                packets[kind] = packets.get(kind, 0) + 1
                sent = read_stamp(bytes(packet))
                if sent is not None:
                    at = seg.t_start_ms / 1000 + float(packet.pts * packet.time_base)
                    stamps[kind].append((at, sent))
            return Played((container.duration or 0) / 1e6, packets, stamps)


def offset_s(stamps: list[tuple[float, float]]) -> float:
    """Median of (recorded time - send time): one number per stream; equal means in sync."""
    return statistics.median(at - sent for at, sent in stamps)


def track(client: CallClient, kind: str) -> ClipTrack:
    return next(t for t in client.tracks if t.kind == kind)


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        await asyncio.sleep(interval)


async def closed_segments(node: Node, cid: str) -> list[RecordingSegment]:
    return [s for s in await segments(node.ctx.db, cid) if s.state != "purged"]


async def recorded_call(node: Node, clips, seconds: float = 3.0) -> str:
    """A short consultation, recorded and ended; returns its id."""
    cid, guardian, doctor = await start_call(node, clips)
    try:
        await asyncio.sleep(seconds)  # the length of the call (not a synchronisation)
        await end_call(node, cid, guardian, doctor)
    finally:
        await guardian.close()
        await doctor.close()
    return cid
