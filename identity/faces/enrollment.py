"""Enrolling a reference photo (a doctor's or a guardian's): read the upload within its size
limit, refuse from its header a picture too large or too thin to decode (image_check.py), check
it in a face worker (whole, exactly one face, big enough), keep the photo in protected storage and
its encoding and SHA-256 in the database; every outcome is an event."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from core.auth import json_error
from core.endpoint import read_body
from core.store.faces import FaceEnrollment, GuardianFaceEnrollment
from core.store.models import SYSTEM_CHAIN

from . import image_check
from .host import FaceDesk
from .worker import EnrollResult

PHOTO_TYPES = ("image/jpeg", "image/png")


@dataclass
class EnrollmentError(Exception):
    """A photo that cannot be enrolled; `code` is machine-readable, `message` for a person."""

    code: str
    message: str


@dataclass(frozen=True)
class Whose:
    """Whose face: the event names, the database row, the storage folder differ; nothing else."""

    kind: str  # "doctor" | "guardian"
    id: str
    events: str  # event prefix: identity.enrolled, guardian.enrolled, ...
    model: type[FaceEnrollment] | type[GuardianFaceEnrollment]
    folder: str

    @classmethod
    def doctor(cls, doctor_id: str) -> Whose:
        return cls("doctor", doctor_id, "identity", FaceEnrollment, f"photos/{doctor_id}")

    @classmethod
    def guardian(cls, guardian_id: str) -> Whose:
        return cls("guardian", guardian_id, "guardian", GuardianFaceEnrollment,
                   f"guardians/{guardian_id}")


async def read_photo(request: web.Request, limit: int) -> bytes:
    """The raw JPEG/PNG body, refused (413) past `limit` whether or not a length was sent, and
    (408) when it does not arrive within the body-read time limit (core.endpoint)."""
    if request.content_type not in PHOTO_TYPES:
        raise json_error(422, "unsupported_format", "send a JPEG or PNG photo "
                         "(Content-Type image/jpeg or image/png)")
    return await read_body(request, limit)


async def enroll(desk: FaceDesk, whose: Whose, photo: bytes, min_face_px: int,
                 actor: str) -> FaceEnrollment | GuardianFaceEnrollment:
    # A size past the limits is refused from the header here, so it never takes a worker's turn.
    found = image_check.header(photo)
    refused = found and image_check.refusal(found.width, found.height, desk.config.photo)
    if found is not None and refused is not None:
        result = EnrollResult(error=refused.code, message=refused.message, width=found.width,
                              height=found.height)
    else:
        result = await desk.pool.enroll(photo, min_face_px, desk.config.photo)
    if result.error is not None or result.encoding is None:
        await desk.events.append(SYSTEM_CHAIN, f"{whose.events}.enroll.refused", actor, {
            whose.kind: whose.id, "code": result.error, "faces": result.faces,
            "face_px": result.face_px, "width": result.width, "height": result.height})
        message = result.message
        if result.error == "several_faces":
            message = f"{result.faces} faces were found; the photo must show only the {whose.kind}"
        raise EnrollmentError(result.error or "unreadable_image", message)
    try:
        path, digest = await desk.store.put(whose.folder, photo,
                                            ".png" if photo[:4] == b"\x89PNG" else ".jpg")
    except OSError as exc:  # a full or failing disk: nothing changes, the admin may retry
        await desk.events.append(SYSTEM_CHAIN, f"{whose.events}.enroll.failed", actor, {
            whose.kind: whose.id, "error": str(exc)})
        raise EnrollmentError("storage_unavailable",
                              "the photo could not be stored; nothing was changed") from exc
    async with desk.db.session() as session, session.begin():
        row = await session.get(whose.model, whose.id)
        if row is None:
            row = whose.model(**{f"{whose.kind}_id": whose.id})
            session.add(row)
        row.encoding, row.photo_sha256, row.photo_path = result.encoding, digest, path
        row.face_px, row.enrolled_by = result.face_px, actor
    await desk.events.append(SYSTEM_CHAIN, f"{whose.events}.enrolled", actor, {
        whose.kind: whose.id, "photo_sha256": digest, "face_px": result.face_px,
        "width": result.width, "height": result.height})
    return row


def enrollment_error(exc: EnrollmentError) -> web.HTTPException:
    """422 for a photo that cannot be enrolled, 503 when it could not be stored."""
    return json_error(503 if exc.code == "storage_unavailable" else 422, exc.code, exc.message)
