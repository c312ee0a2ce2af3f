"""The doctor registry for admins: create and update doctors, enroll face photos, read them back
(logged), and see the whitelist rules' verdict. Every change is an event on the "system" chain.

Whitelist rules are NOT re-implemented here: `/eligibility` asks core/policy (issue 6), the one
data-driven rule set the booking and the accept gate use too.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from core import fields
from core.auth import CLAIMS_KEY, Role, json_error
from core.context import CONTEXT_KEY
from core.endpoint import NO_STORE, endpoint, page
from core.fields import Day, Id, MaskedNationalId, Name
from core.store import Doctor, Hospital, records
from core.store.faces import FaceEnrollment, FaceVerification
from core.store.models import SYSTEM_CHAIN, TITLES, VISIT_TYPES, WHITELIST_STATUSES

from ..faces.enrollment import (
    PHOTO_TYPES,
    EnrollmentError,
    Whose,
    enroll,
    enrollment_error,
    read_photo,
)
from .service import IdentityService

IDENTITY_KEY = web.AppKey("identity", IdentityService)
STATIC_DIR = Path(__file__).resolve().parents[2] / "static"


# -- what each route accepts --------------------------------------------------------------------

Specialty = fields.text(100)
Licence = fields.text(64)


class DoctorChanges(BaseModel):
    """PATCH: the fields sent change, the others stay. A date sent as null is cleared; the other
    fields default to None only when absent (defaults are not validated): a null is refused."""

    model_config = ConfigDict(extra="forbid")
    name: Name = None
    national_id_masked: MaskedNationalId = None
    licence_no: Licence = None  # type: ignore[valid-type]
    hospital_id: Id = None
    title: Literal[TITLES] = None  # type: ignore[valid-type]
    clinical_practice_since: Day | None = None
    online_practice_since: Day | None = None
    training_passed_on: Day | None = None
    specialties: Annotated[list[Specialty], Field(max_length=20)] = None  # type: ignore[valid-type]
    whitelist_status: Literal[WHITELIST_STATUSES] = None  # type: ignore[valid-type]
    whitelist_reason: fields.text(500) | None = None  # type: ignore[valid-type]


class NewDoctor(DoctorChanges):
    """A new doctor: who, where, what rank; the rest as for a change."""

    name: Name
    national_id_masked: MaskedNationalId
    licence_no: Licence  # type: ignore[valid-type]
    hospital_id: Id
    title: Literal[TITLES]  # type: ignore[valid-type]


class EligibilityQuery(BaseModel):
    """What to ask the policy: the day (default today), the visit, where (default the doctor's)."""

    model_config = ConfigDict(extra="forbid")
    on: Day | None = None
    visit_type: Literal[VISIT_TYPES] = "follow_up"  # type: ignore[valid-type]
    hospital_id: Id | None = None
    specialty: Specialty | None = None  # type: ignore[valid-type]


admin_page = page(STATIC_DIR / "admin-doctors.html",
                  "The registry page for admins (its API calls carry the token).")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/doctors", admin_page)
    # No HEAD on the audited reads of personal data (issue 17; tests/test_streaming_routes.py).
    app.router.add_get("/api/admin/doctors", list_doctors, allow_head=False)
    app.router.add_post("/api/admin/doctors", create_doctor)
    app.router.add_get("/api/admin/doctors/{doctor_id}", get_doctor, allow_head=False)
    app.router.add_patch("/api/admin/doctors/{doctor_id}", update_doctor)
    app.router.add_put("/api/admin/doctors/{doctor_id}/face", upload_face)
    app.router.add_get("/api/admin/doctors/{doctor_id}/face", read_face, allow_head=False)
    app.router.add_get("/api/admin/doctors/{doctor_id}/eligibility", eligibility)
    app.router.add_get("/api/consultations/{cid}/identity", consultation_identity,
                       allow_head=False)
    app.router.add_get("/api/consultations/{cid}/identity/{vid}/evidence", read_evidence,
                       allow_head=False)


def _actor(request: web.Request) -> str:
    claims = request[CLAIMS_KEY]
    return f"{claims.role}:{claims.subject}"


_WHITELIST = {"whitelist_status", "whitelist_reason"}


async def _apply(request: web.Request, doctor: Doctor, body: DoctorChanges) -> dict[str, Any]:
    """Set the fields sent in `body`; return what changed (for the event)."""
    changes: dict[str, Any] = {}
    for name, value in body.model_dump(include=body.model_fields_set - _WHITELIST).items():
        if getattr(doctor, name, None) != value:
            setattr(doctor, name, value)
            changes[name] = value.isoformat() if isinstance(value, date) else value
    if "whitelist_status" in body.model_fields_set:
        status, reason = body.whitelist_status, body.whitelist_reason
        if status != "active" and not reason:
            raise json_error(422, "bad_field", "whitelist_reason: say why a doctor is "
                             f"{status}", field="whitelist_reason")
        if status != doctor.whitelist_status or reason != doctor.whitelist_reason:
            doctor.whitelist_status = status
            doctor.whitelist_reason = reason
            doctor.whitelist_changed_at = datetime.now(UTC)
            changes["whitelist_status"] = status
            changes["whitelist_reason"] = doctor.whitelist_reason
    if "hospital_id" in changes and await records.get_hospital(
            request.app[CONTEXT_KEY].db, changes["hospital_id"]) is None:
        raise json_error(422, "bad_field", "hospital_id: no such hospital")
    return changes


def _public(doctor: Doctor, enrollment: FaceEnrollment | None) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": doctor.id, "name": doctor.name, "national_id_masked": doctor.national_id_masked,
        "licence_no": doctor.licence_no, "hospital_id": doctor.hospital_id,
        "title": doctor.title, "clinical_practice_since": iso(doctor.clinical_practice_since),
        "online_practice_since": iso(doctor.online_practice_since),
        "training_passed_on": iso(doctor.training_passed_on),
        "specialties": list(doctor.specialties or []),
        "whitelist_status": doctor.whitelist_status,
        "whitelist_reason": doctor.whitelist_reason,
        "whitelist_changed_at": iso(doctor.whitelist_changed_at),
        "face": None if enrollment is None else {
            "photo_sha256": enrollment.photo_sha256, "face_px": enrollment.face_px,
            "enrolled_at": iso(enrollment.enrolled_at), "enrolled_by": enrollment.enrolled_by},
    }


async def _doctor_or_404(request: web.Request) -> Doctor:
    doctor = await records.get_doctor(request.app[CONTEXT_KEY].db,
                                      request.match_info["doctor_id"])
    if doctor is None:
        raise json_error(404, "no_doctor", "no such doctor")
    return doctor


@endpoint(Role.ADMIN)
async def list_doctors(request: web.Request) -> web.Response:
    """Every doctor with the enrolled photo's summary, and the hospitals (a read is logged)."""
    async with request.app[CONTEXT_KEY].db.session() as session:
        doctors = list(await session.scalars(select(Doctor).order_by(Doctor.created_at)))
        faces = {f.doctor_id: f for f in await session.scalars(select(FaceEnrollment))}
        hospitals = {h.id: h.name for h in await session.scalars(select(Hospital))}
    await request.app[CONTEXT_KEY].events.append(  # personal data read: who, which
        SYSTEM_CHAIN, "registry.read", _actor(request), {"doctors": len(doctors)})
    return web.json_response({"doctors": [_public(d, faces.get(d.id)) for d in doctors],
                              "hospitals": hospitals}, headers=NO_STORE)


@endpoint(Role.ADMIN)
async def get_doctor(request: web.Request) -> web.Response:
    """One doctor's record (a read is logged)."""
    doctor = await _doctor_or_404(request)
    enrollment = await request.app[IDENTITY_KEY].enrollment(doctor.id)
    await request.app[CONTEXT_KEY].events.append(SYSTEM_CHAIN, "registry.read", _actor(request),
                                                 {"doctor": doctor.id})
    return web.json_response(_public(doctor, enrollment), headers=NO_STORE)


@endpoint(Role.ADMIN, body=NewDoctor)
async def create_doctor(request: web.Request, body: NewDoctor) -> web.Response:
    """Register a doctor (least data: a national ID only masked)."""
    doctor = Doctor(specialties=[], whitelist_status="active")
    changes = await _apply(request, doctor, body)
    ctx = request.app[CONTEXT_KEY]
    async with ctx.db.session() as session, session.begin():
        session.add(doctor)
    await ctx.events.append(SYSTEM_CHAIN, "registry.doctor.created", _actor(request),
                            {"doctor": doctor.id, **changes})
    return web.json_response(_public(doctor, None), status=201)


@endpoint(Role.ADMIN, body=DoctorChanges)
async def update_doctor(request: web.Request, body: DoctorChanges) -> web.Response:
    """Change the fields sent; a whitelist status other than active needs a reason."""
    ctx = request.app[CONTEXT_KEY]
    async with ctx.db.session() as session, session.begin():
        doctor = await session.get(Doctor, request.match_info["doctor_id"])
        if doctor is None:
            raise json_error(404, "no_doctor", "no such doctor")
        changes = await _apply(request, doctor, body)
    if changes:
        await ctx.events.append(SYSTEM_CHAIN, "registry.doctor.updated", _actor(request),
                                {"doctor": doctor.id, **changes})
    enrollment = await request.app[IDENTITY_KEY].enrollment(doctor.id)
    return web.json_response(_public(doctor, enrollment))


@endpoint(Role.ADMIN, upload=PHOTO_TYPES)
async def upload_face(request: web.Request) -> web.Response:
    """PUT the photo as the raw body (image/jpeg or image/png), at most TC_FACE_MAX_PHOTO_BYTES."""
    svc = request.app[IDENTITY_KEY]
    doctor = await _doctor_or_404(request)
    photo = await read_photo(request, svc.config.max_photo_bytes)
    try:
        row = await enroll(svc, Whose.doctor(doctor.id), photo, svc.config.min_face_px,
                           _actor(request))
    except EnrollmentError as exc:
        raise enrollment_error(exc) from None
    return web.json_response(_public(doctor, row))


@endpoint(Role.ADMIN)
async def read_face(request: web.Request) -> web.Response:
    """The enrolled photo itself: personal data, so every read is an event."""
    svc = request.app[IDENTITY_KEY]
    doctor = await _doctor_or_404(request)
    enrollment = await svc.enrollment(doctor.id)
    if enrollment is None:
        raise json_error(404, "not_enrolled", "no enrolled photo")
    await svc.ctx.events.append(SYSTEM_CHAIN, "identity.photo.read", _actor(request),
                                {"doctor": doctor.id, "photo_sha256": enrollment.photo_sha256})
    data = await svc.store.read(enrollment.photo_path)
    kind = "image/png" if enrollment.photo_path.endswith(".png") else "image/jpeg"
    return web.Response(body=data, content_type=kind, headers=NO_STORE)


@endpoint(Role.ADMIN, query=EligibilityQuery)
async def eligibility(request: web.Request, query: EligibilityQuery) -> web.Response:
    """core/policy's verdict for this doctor: ?on=YYYY-MM-DD&visit_type=first&specialty=…"""
    from core.policy import load_policy
    from core.policy.check import decide

    doctor = await _doctor_or_404(request)
    specialty = query.specialty if query.specialty is not None else (
        (doctor.specialties or [""])[0])
    decision = decide(load_policy(), on=query.on or datetime.now(UTC).date(),
                      visit_type=query.visit_type,
                      hospital_id=query.hospital_id or doctor.hospital_id,
                      specialty=specialty, doctor=doctor, patient_id="", prior=None)
    return web.json_response(decision.to_dict(), dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


@endpoint(Role.ADMIN, Role.AUDITOR, Role.OPS)
async def consultation_identity(request: web.Request) -> web.Response:
    """The verification attempts of a consultation (the index; the events are the trail)."""
    cid = request.match_info["cid"]
    async with request.app[CONTEXT_KEY].db.session() as session:
        rows = list(await session.scalars(select(FaceVerification).where(
            FaceVerification.consultation_id == cid).order_by(FaceVerification.at)))
    if rows:  # (a consultation id that exists: the chain is the consultation's)
        await request.app[CONTEXT_KEY].events.append(cid, "identity.read", _actor(request), {})
    return web.json_response({"consultation": cid, "attempts": [
        {"id": r.id, "attempt": r.attempt, "outcome": r.outcome, "challenge": r.challenge,
         "distance": r.distance, "frames": r.frames, "at": r.at.isoformat(),
         "evidence_sha256": r.thumbnail_sha256} for r in rows]})


@endpoint(Role.ADMIN, Role.AUDITOR)
async def read_evidence(request: web.Request) -> web.Response:
    """The evidence thumbnail of a verified attempt; the read is an event of the consultation."""
    svc = request.app[IDENTITY_KEY]
    cid, vid = request.match_info["cid"], request.match_info["vid"]
    async with svc.ctx.db.session() as session:
        row = await session.get(FaceVerification, vid)
    if row is None or row.consultation_id != cid or row.thumbnail_path is None:
        raise json_error(404, "no_evidence", "no evidence for this attempt")
    await svc.ctx.events.append(cid, "identity.evidence.read", _actor(request),
                                {"verification": vid, "sha256": row.thumbnail_sha256})
    return web.Response(body=await svc.store.read(row.thumbnail_path), content_type="image/jpeg",
                        headers=NO_STORE)
