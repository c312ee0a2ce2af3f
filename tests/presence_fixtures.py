"""A node with guardian presence detection on (issue 4), camera clips of real photos for a
scripted patient side, and helpers to enroll a guardian's photo and join a call."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from bench.client import CallClient
from bench.clip import Clip
from bench.faces import BIDEN, CHILD_A, OBAMA_2, empty_scene, side_by_side
from bench.identity import photo_clip
from core.auth import Role
from core.config import Settings
from core.config.presence import PresenceConfig
from core.consent import CURRENT_VERSION
from identity.guardian.presence import PRESENCE_KEY, PresenceService
from server.demo import Booking

from .node_fixtures import Node, node_settings, start_node


class presence_node(start_node):
    """`async with presence_node(tmp, absent_after_s=3) as node:` — presence checks on."""

    def __init__(self, tmp: Path, settings: Settings | None = None, **config: Any) -> None:
        self.config = PresenceConfig(enabled=True).with_(**config)
        settings = settings or node_settings(tmp / "node", rejoin_grace_s=3.0)
        super().__init__(replace(settings, presence=self.config))


def presence_service(node: Node) -> PresenceService:
    svc = node.app[PRESENCE_KEY]
    assert isinstance(svc, PresenceService)
    return svc


async def enroll_guardian_photo(node: Node, guardian_id: str, photo: Path | bytes,
                                content_type: str = "image/jpeg") -> aiohttp.ClientResponse:
    data = photo if isinstance(photo, bytes) else await asyncio.to_thread(Path(photo).read_bytes)
    token = node.token(Role.ADMIN, "admin-1")
    return await node.session.put(
        f"{node.url}/api/admin/guardians/{guardian_id}/face", data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})


_SHOTS: dict[str, Clip] = {}


def patient_shots() -> dict[str, Clip]:
    """VP8 clips (every frame a key frame, so a track can switch at once) of the patient side."""
    if not _SHOTS:
        _SHOTS["guardian_child"] = photo_clip(side_by_side(OBAMA_2, CHILD_A))
        _SHOTS["child_alone"] = photo_clip(side_by_side(empty_scene(), CHILD_A))
        _SHOTS["stranger_child"] = photo_clip(side_by_side(BIDEN, CHILD_A))
    return _SHOTS


@dataclass
class Call:
    guardian: CallClient
    doctor: CallClient

    async def close(self) -> None:
        await self.guardian.close()
        await self.doctor.close()


async def join_call(node: Node, booking: Booking, patient_clip: Clip, doctor_clip: Clip) -> Call:
    """Both sides joined with media; consent given by the patient side."""
    guardian = node.client(booking.guardian_link.split("#token=")[1], {"video": patient_clip})
    doctor = node.client(booking.doctor_link.split("#token=")[1], {"video": doctor_clip})
    await guardian.connect()
    await guardian.send({"type": "consent", "version": CURRENT_VERSION})
    await guardian.expect("consent", timeout=10)
    await guardian.start_media()
    await doctor.connect()
    await doctor.start_media()
    await guardian.wait_connected(timeout=20)
    await doctor.wait_connected(timeout=20)
    return Call(guardian, doctor)
