"""A node with face verification on (issue 3), and helpers to enroll a doctor from a real photo."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from core.auth import Role
from core.config import Settings
from core.config.identity import IdentityConfig
from identity.doctor.registry_api import IDENTITY_KEY
from identity.doctor.service import IdentityService

from .node_fixtures import Node, node_settings, start_node


class identity_node(start_node):
    """`async with identity_node(tmp, challenge="turn_left") as node:` — verification required."""

    def __init__(self, tmp: Path, settings: Settings | None = None, **config: Any) -> None:
        self.config = replace(IdentityConfig(), required=True, **config).checked()
        settings = settings or node_settings(tmp / "node", rejoin_grace_s=3.0)
        super().__init__(replace(settings, identity=self.config))


def identity_service(node: Node) -> IdentityService:
    return node.app[IDENTITY_KEY]


async def enroll_photo(node: Node, doctor_id: str, photo: Path | bytes,
                       content_type: str = "image/jpeg") -> aiohttp.ClientResponse:
    data = photo if isinstance(photo, bytes) else await asyncio.to_thread(Path(photo).read_bytes)
    token = node.token(Role.ADMIN, "admin-1")
    return await node.session.put(
        f"{node.url}/api/admin/doctors/{doctor_id}/face", data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
