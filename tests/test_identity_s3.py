"""Identity's protected files (enrollment photos) in the S3-protocol bucket (issue 12): a real
photo enrolled over HTTP lands under `identity/`, is read back through the audited route, and
nothing of it stays on the node's disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faces import OBAMA
from core.auth import Role
from core.objects.s3 import S3Storage
from core.store.models import SYSTEM_CHAIN
from identity.faces.storage import ProtectedStore

from .identity_fixtures import enroll_photo, identity_node
from .node_fixtures import node_settings
from .s3_fixtures import S3Server


async def test_an_enrollment_photo_is_kept_in_the_bucket(tmp_path: Path,
                                                         s3_server: S3Server) -> None:
    bucket = s3_server.bucket(object_lock=False)
    settings = node_settings(tmp_path / "node", store=s3_server.config(bucket, prefix="h1/"))
    async with identity_node(tmp_path, settings=settings) as node:
        did = (await node.book()).doctor_id
        r = await enroll_photo(node, did, OBAMA.read_bytes())
        assert r.status == 200, await r.text()
        sha = (await r.json())["face"]["photo_sha256"]
        listed = s3_server.admin().list_objects_v2(Bucket=bucket, Prefix="h1/identity/")
        keys = [o["Key"] for o in listed["Contents"]]
        assert len(keys) == 1 and keys[0].startswith("h1/identity/photos/")
        assert keys[0].endswith(f"{sha}.jpg")
        local = [p for p in (settings.data_dir / "identity").rglob("*") if p.is_file()]
        assert local == []
        r = await node.session.get(f"{node.url}/api/admin/doctors/{did}/face", headers={
            "Authorization": f"Bearer {node.token(Role.ADMIN, 'admin-1')}"})
        assert r.status == 200 and await r.read() == OBAMA.read_bytes()
        kinds = [e.kind for e in await node.ctx.events.events(SYSTEM_CHAIN)]
        assert "identity.enrolled" in kinds and "identity.photo.read" in kinds


async def test_a_path_outside_the_protected_store_is_refused(tmp_path: Path,
                                                             s3_server: S3Server) -> None:
    config = s3_server.config(s3_server.bucket(object_lock=False))
    store = ProtectedStore(tmp_path, S3Storage(config, "identity/"))
    relative, _ = await store.put("photos/p1", b"face", ".jpg")
    assert await store.read(relative) == b"face"
    with pytest.raises(PermissionError):
        await store.read("../recordings/c1/doctor-00000.webm.enc")
    with pytest.raises(FileNotFoundError):
        await store.read("photos/p1/none.jpg")
