"""Enrolling a doctor's reference photo: checked in a worker (exactly one face, big enough),
stored in protected storage, its encoding and SHA-256 in the database, the change an event."""

from __future__ import annotations

from dataclasses import dataclass

from server.store.models import SYSTEM_CHAIN

from .models import FaceEnrollment
from .service import IdentityService


@dataclass
class EnrollmentError(Exception):
    """A photo that cannot be enrolled; `code` is machine-readable, `message` for a person."""

    code: str
    message: str


async def enroll(svc: IdentityService, doctor_id: str, photo: bytes, actor: str
                 ) -> FaceEnrollment:
    result = await svc.pool.enroll(photo, svc.config.min_face_px)
    if result.error is not None or result.encoding is None:
        await svc.ctx.events.append(SYSTEM_CHAIN, "identity.enroll.refused", actor, {
            "doctor": doctor_id, "code": result.error, "faces": result.faces,
            "face_px": result.face_px})
        raise EnrollmentError(result.error or "unreadable_image", result.message)
    path, digest = svc.store.put(f"photos/{doctor_id}", photo,
                                 ".png" if photo[:4] == b"\x89PNG" else ".jpg")
    async with svc.ctx.db.session() as session, session.begin():
        row = await session.get(FaceEnrollment, doctor_id)
        if row is None:
            row = FaceEnrollment(doctor_id=doctor_id)
            session.add(row)
        row.encoding, row.photo_sha256, row.photo_path = result.encoding, digest, path
        row.face_px, row.enrolled_by = result.face_px, actor
    await svc.ctx.events.append(SYSTEM_CHAIN, "identity.enrolled", actor, {
        "doctor": doctor_id, "photo_sha256": digest, "face_px": result.face_px,
        "width": result.width, "height": result.height})
    return row
