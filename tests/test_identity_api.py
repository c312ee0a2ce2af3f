"""The doctor registry admin API and face enrollment over HTTP (issue 3)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from PIL import Image

from bench.faces import OBAMA, TWO_PEOPLE, empty_scene, load_photo
from core.auth import Role
from core.store.models import SYSTEM_CHAIN
from tests.hostile_images import blank_png, cut_short, encoded

from .identity_fixtures import enroll_photo, identity_node
from .node_fixtures import node_settings
from .presence_fixtures import enroll_guardian_photo


def _auth(node, role: Role = Role.ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token(role, 'admin-1')}"}


async def test_registry_create_update_and_events(tmp_path: Path) -> None:
    async with identity_node(tmp_path) as node:
        booking = await node.book()
        doctor = await (await node.session.get(
            f"{node.url}/api/admin/doctors/{booking.doctor_id}", headers=_auth(node))).json()
        base = {"name": "张医生", "national_id_masked": "110***********5678",
                "licence_no": "110110000099999", "hospital_id": doctor["hospital_id"],
                "title": "attending", "clinical_practice_since": "2020-01-01",
                "specialties": ["儿童营养"]}
        url = f"{node.url}/api/admin/doctors"
        r = await node.session.post(url, json=base, headers=_auth(node, Role.OPS))
        assert r.status == 403
        r = await node.session.post(url, json={**base, "national_id_masked": "110101199001015678"},
                                    headers=_auth(node))
        assert r.status == 422 and "masked" in (await r.json())["error"]["message"]
        r = await node.session.post(url, json=base, headers=_auth(node))
        assert r.status == 201, await r.text()
        created = await r.json()
        r = await node.session.patch(f"{url}/{created['id']}",
                                     json={"whitelist_status": "suspended"}, headers=_auth(node))
        assert r.status == 422  # a suspension needs a reason
        r = await node.session.patch(f"{url}/{created['id']}", headers=_auth(node), json={
            "whitelist_status": "suspended", "whitelist_reason": "licence under review"})
        updated = await r.json()
        assert updated["whitelist_status"] == "suspended" and updated["whitelist_changed_at"]
        listing = await (await node.session.get(url, headers=_auth(node))).json()
        assert {d["id"] for d in listing["doctors"]} >= {created["id"], booking.doctor_id}
        r = await node.session.get(f"{url}/{created['id']}/eligibility?on=2026-06-01",
                                   headers=_auth(node))
        assert r.status == 200 and "rules" in await r.json()
        kinds = [(e.kind, e.data.get("doctor")) for e in await node.ctx.events.events(SYSTEM_CHAIN)]
        assert ("registry.doctor.created", created["id"]) in kinds
        assert ("registry.doctor.updated", created["id"]) in kinds
        assert ("registry.read", booking.doctor_id) in kinds  # personal data read: logged
        assert [k for k, _ in kinds].count("registry.read") == 2  # the record and the list
        page = await node.session.get(f"{node.url}/admin/doctors")
        assert page.status == 200 and "医生" in await page.text()


async def test_enrollment_over_http(tmp_path: Path) -> None:
    async with identity_node(tmp_path, max_photo_bytes=2_000_000) as node:
        booking = await node.book()
        did = booking.doctor_id

        def jpeg(img: Image.Image) -> bytes:
            out = io.BytesIO()
            img.save(out, "JPEG")
            return out.getvalue()

        cases = [(TWO_PEOPLE.read_bytes(), "several_faces"),
                 (jpeg(empty_scene((640, 480))), "no_face"),
                 (b"\xff\xd8\xff\xe0garbage", "unreadable_image")]
        for data, code in cases:
            r = await enroll_photo(node, did, data)
            assert r.status == 422 and (await r.json())["error"]["code"] == code
        r = await enroll_photo(node, did, OBAMA.read_bytes(), content_type="image/gif")
        assert r.status == 422
        r = await enroll_photo(node, did, b"\xff" * 2_000_001)
        assert r.status == 413 and (await r.json())["error"]["code"] == "too_large"

        async def chunks():  # no Content-Length: the limit holds on the bytes read
            for _ in range(40):
                yield b"\xff" * 64_000

        r = await node.session.put(f"{node.url}/api/admin/doctors/{did}/face", data=chunks(),
                                   headers={**_auth(node), "Content-Type": "image/jpeg"})
        assert r.status == 413 and (await r.json())["error"]["code"] == "too_large"
        async def photo_in_chunks():  # a chunked upload arrives whole
            data = OBAMA.read_bytes()
            for at in range(0, len(data), 16_000):
                yield data[at:at + 16_000]

        r = await node.session.put(f"{node.url}/api/admin/doctors/{did}/face",
                                   data=photo_in_chunks(),
                                   headers={**_auth(node), "Content-Type": "image/jpeg"})
        assert r.status == 200, await r.text()
        face = (await r.json())["face"]
        assert len(face["photo_sha256"]) == 64
        stored = list((node.settings.data_dir / "identity" / "photos").rglob("*.jpg"))
        assert len(stored) == 1 and stored[0].stat().st_mode & 0o077 == 0
        r = await node.session.get(f"{node.url}/api/admin/doctors/{did}/face",
                                   headers=_auth(node))
        assert r.status == 200 and await r.read() == OBAMA.read_bytes()
        kinds = [e.kind for e in await node.ctx.events.events(SYSTEM_CHAIN)]
        assert kinds.count("identity.enroll.refused") == 3
        assert "identity.enrolled" in kinds and "identity.photo.read" in kinds


async def _refusals(node, kind: str) -> list[dict]:
    return [e.data for e in await node.ctx.events.events(SYSTEM_CHAIN) if e.kind == kind]


def _stored(node) -> list[Path]:
    return [p for p in (node.settings.data_dir / "identity").rglob("*") if p.is_file()]


async def test_a_photo_cut_short_is_not_enrolled(tmp_path: Path) -> None:
    """Issue 17 (4): a JPEG cut at 70% was padded with grey in the worker and enrolled."""
    async with identity_node(tmp_path) as node:
        booking = await node.book()
        whole = OBAMA.read_bytes()
        r = await enroll_photo(node, booking.doctor_id, cut_short(whole))
        body = await r.json()
        assert r.status == 422 and body["error"]["code"] == "bad_image", body
        assert "cut short" in body["error"]["message"]
        png = encoded(load_photo(OBAMA), "PNG")
        r = await enroll_guardian_photo(node, booking.guardian_id, cut_short(png), "image/png")
        assert r.status == 422 and (await r.json())["error"]["code"] == "bad_image"
        assert _stored(node) == []
        r = await node.session.get(f"{node.url}/api/admin/doctors/{booking.doctor_id}/face",
                                   headers=_auth(node))
        assert r.status == 404
        refused = await _refusals(node, "identity.enroll.refused")
        assert [(e["doctor"], e["code"]) for e in refused] == [(booking.doctor_id, "bad_image")]
        refused = await _refusals(node, "guardian.enroll.refused")
        assert [e["code"] for e in refused] == ["bad_image"]
        r = await enroll_photo(node, booking.doctor_id, whole)
        assert r.status == 200, await r.text()


async def test_photo_sizes_past_the_limits_are_refused(tmp_path: Path) -> None:
    """Issue 17 (5): a 20 KB PNG of 13000x13000 took a face worker to 1.1 GB for 4 s, and a
    30000x2 PNG gave a 500. Sizes are refused from the header, doctors' and guardians' alike."""
    async with identity_node(tmp_path) as node:
        booking = await node.book()
        did = booking.doctor_id
        bomb = blank_png(13000, 13000)
        assert len(bomb) < 25_000
        cases = [(bomb, "image/png", "image_too_large", (13000, 13000)),
                 (encoded(Image.new("RGB", (30000, 2)), "PNG"), "image/png", "image_too_large",
                  (30000, 2)),
                 (encoded(empty_scene((4200, 1400)), "JPEG"), "image/jpeg", "image_too_large",
                  (4200, 1400)),
                 (encoded(Image.new("RGB", (48, 48)), "PNG"), "image/png", "bad_image", (48, 48)),
                 (encoded(empty_scene((1600, 300)), "JPEG"), "image/jpeg", "bad_image",
                  (1600, 300))]
        for data, kind, code, size in cases:
            r = await enroll_photo(node, did, data, content_type=kind)
            body = await r.json()
            assert r.status == 422 and body["error"]["code"] == code, body
            assert f"{size[0]}x{size[1]}" in body["error"]["message"]
        r = await enroll_guardian_photo(node, booking.guardian_id, bomb, "image/png")
        assert r.status == 422 and (await r.json())["error"]["code"] == "image_too_large"
        assert _stored(node) == []
        refused = await _refusals(node, "identity.enroll.refused")
        assert [(e["code"], (e["width"], e["height"])) for e in refused] == [
            (code, size) for _, _, code, size in cases]
        refused = await _refusals(node, "guardian.enroll.refused")
        assert [(e["guardian"], e["code"]) for e in refused] == [
            (booking.guardian_id, "image_too_large")]
        r = await enroll_photo(node, did, OBAMA.read_bytes())
        assert r.status == 200, await r.text()


# -- hostile input (issue 17): a clean 4xx with a JSON error, never a 500 -----------------------

DEEP = "[" * 50_000 + "]" * 50_000


async def _doctor_ids(node) -> set[str]:
    listing = await (await node.session.get(f"{node.url}/api/admin/doctors",
                                            headers=_auth(node))).json()
    return {d["id"] for d in listing["doctors"]}


async def test_registry_refuses_deep_json_and_text_that_is_not_text(tmp_path: Path) -> None:
    async with identity_node(tmp_path) as node:
        booking = await node.book()
        url = f"{node.url}/api/admin/doctors"
        did = booking.doctor_id
        before = await (await node.session.get(f"{url}/{did}", headers=_auth(node))).json()
        for body in (DEEP, '{"name": ' + DEEP + "}"):
            for method, target in (("POST", url), ("PATCH", f"{url}/{did}")):
                r = await node.session.request(method, target, data=body, headers={
                    **_auth(node), "Content-Type": "application/json"})
                assert r.status == 400, (method, await r.text())
                assert (await r.json())["error"]["code"] == "bad_json"
        base = {"name": "张医生", "national_id_masked": "110***********5678",
                "licence_no": "110110000099998", "hospital_id": before["hospital_id"],
                "title": "attending", "specialties": ["儿童营养"]}
        for field, value in (("name", "\ud800"), ("name", "张\udfff"), ("licence_no", "1\x00"),
                             ("specialties", ["\ud800"]), ("whitelist_reason", "\ud800"),
                             ("clinical_practice_since", "9999-12-31")):
            changes = {field: value}
            if field == "whitelist_reason":
                changes["whitelist_status"] = "suspended"
            r = await node.session.post(url, json={**base, **changes}, headers=_auth(node))
            assert r.status == 422, (field, await r.text())
            error = (await r.json())["error"]
            assert error["code"] == "bad_field" and error["field"].startswith(field), error
            r = await node.session.patch(f"{url}/{did}", json=changes, headers=_auth(node))
            assert r.status == 422, (field, await r.text())
        assert await _doctor_ids(node) == {did}
        after = await (await node.session.get(f"{url}/{did}", headers=_auth(node))).json()
        assert after == before
        assert (await node.ctx.events.verify(SYSTEM_CHAIN)).ok


async def test_eligibility_query_is_checked(tmp_path: Path) -> None:
    async with identity_node(tmp_path) as node:
        did = (await node.book()).doctor_id
        url = f"{node.url}/api/admin/doctors/{did}/eligibility"
        r = await node.session.get(url, params={"visit_type": "zz"}, headers=_auth(node))
        assert r.status == 422, await r.text()
        error = (await r.json())["error"]
        assert (error["code"], error["field"]) == ("bad_query", "visit_type")
        assert "'first'" in error["message"] and "'follow_up'" in error["message"]
        for on in ("0001-01-01", "9999-12-31", "2026-02-30", "soon", ""):
            r = await node.session.get(url, params={"on": on}, headers=_auth(node))
            assert r.status == 422, (on, await r.text())
            assert (await r.json())["error"]["field"] == "on"
        for params in ({"on": "1900-01-01"}, {"on": "2199-12-31", "visit_type": "first"},
                       {"specialty": "儿童营养", "hospital_id": "h_bj_bch"}, {}):
            r = await node.session.get(url, params=params, headers=_auth(node))
            assert r.status == 200, (params, await r.text())
            assert "rules" in await r.json()


async def test_a_photo_that_never_arrives_is_408(tmp_path: Path) -> None:
    """A declared body that does not come holds a connection and a handler: not for long."""
    settings = node_settings(tmp_path / "node", body_timeout_s=0.5)
    async with identity_node(tmp_path, settings) as node:
        did = (await node.book()).doctor_id
        reader, writer = await asyncio.open_connection(node.server.host, node.server.port)
        writer.write("\r\n".join([
            f"PUT /api/admin/doctors/{did}/face HTTP/1.1", "Host: node",
            f"Authorization: Bearer {node.token(Role.ADMIN, 'admin-1')}",
            "Content-Type: image/jpeg", "Content-Length: 100000", "", ""]).encode()
            + b"\xff\xd8\xff\xe0")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        assert head.startswith(b"HTTP/1.1 408"), head
        kinds = [e.kind for e in await node.ctx.events.events(SYSTEM_CHAIN)]
        assert "identity.enrolled" not in kinds and "identity.enroll.refused" not in kinds
