"""Guardians' reference photos (issue 4): enrollment through the same checks as a doctor's photo
(identity.faces.worker.enroll in the face pool: a readable JPEG/PNG, exactly one face, big
enough), the admin endpoint for it, and the lookups presence detection needs (whose faces count
as the patient's guardian, and whether a consultation is pediatric).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from sqlalchemy import select

from core.auth import CLAIMS_KEY, Role, json_error
from core.config.presence import PresenceConfig
from core.context import CONTEXT_KEY
from core.endpoint import NO_STORE, endpoint
from core.policy.dates import consultation_date
from core.store import Database, Guardian, records
from core.store.faces import GuardianFaceEnrollment

from ..faces.enrollment import (
    PHOTO_TYPES,
    EnrollmentError,
    Whose,
    enroll,
    enrollment_error,
    read_photo,
)
from ..faces.host import FACES_KEY
from .presence_policy import is_under


@dataclass(frozen=True)
class Ages:
    """How the age rules apply to one consultation (its date in Asia/Shanghai)."""

    pediatric: bool  # under `pediatric_age`: a guardian must be on camera
    prescribe_needs_guardian: bool  # under `prescribe_guardian_age`


async def consultation_ages(db: Database, cid: str, cfg: PresenceConfig,
                            on: datetime | None = None) -> Ages | None:
    """None when the consultation or its patient is unknown. `on` defaults to its scheduled time."""
    consultation = await records.get_consultation(db, cid)
    if consultation is None:
        return None
    patient = await records.get_patient(db, consultation.patient_id)
    if patient is None:
        return None
    day = consultation_date(on or consultation.scheduled_at)
    return Ages(is_under(patient.birth_date, cfg.pediatric_age, day),
                is_under(patient.birth_date, cfg.prescribe_guardian_age, day))


async def guardian_encodings(db: Database, patient_id: str) -> dict[str, list[float]]:
    """Every enrolled guardian of the patient: guardian id → reference encoding."""
    async with db.session() as session:
        rows = await session.execute(
            select(GuardianFaceEnrollment.guardian_id, GuardianFaceEnrollment.encoding)
            .join(Guardian, Guardian.id == GuardianFaceEnrollment.guardian_id)
            .where(Guardian.patient_id == patient_id))
        return {gid: list(enc) for gid, enc in rows.all()}


def add_routes(app: web.Application) -> None:
    app.router.add_put("/api/admin/guardians/{guardian_id}/face", upload_guardian_face)


@endpoint(Role.ADMIN, upload=PHOTO_TYPES)
async def upload_guardian_face(request: web.Request) -> web.Response:
    """PUT the guardian's reference photo as the raw body (image/jpeg or image/png).

    413 above the size limit; 422 with a code (unsupported_format, unreadable_image,
    image_too_large, bad_image, no_face, several_faces, face_too_small) when the photo cannot be
    enrolled; 404 for an unknown guardian.
    """
    svc = request.app[FACES_KEY]
    ctx = request.app[CONTEXT_KEY]
    cfg = ctx.settings.presence
    guardian = await records.get_guardian(ctx.db, request.match_info["guardian_id"])
    if guardian is None:
        raise json_error(404, "no_guardian", "no such guardian")
    photo = await read_photo(request, cfg.max_photo_bytes)
    claims = request[CLAIMS_KEY]
    try:
        row = await enroll(svc, Whose.guardian(guardian.id), photo, cfg.min_face_px,
                           f"{claims.role}:{claims.subject}")
    except EnrollmentError as exc:
        raise enrollment_error(exc) from None
    return web.json_response({
        "guardian": guardian.id, "patient_id": guardian.patient_id, "name": guardian.name,
        "relation": guardian.relation, "national_id_masked": guardian.national_id_masked,
        "face": {"photo_sha256": row.photo_sha256, "face_px": row.face_px,
                 "enrolled_at": row.enrolled_at.isoformat() if row.enrolled_at else None},
    }, headers=NO_STORE)
