"""The doctor registry for admins: create and update doctors, enroll face photos, read them back
(logged), and see the whitelist rules' verdict. Every change is an event on the "system" chain.

Whitelist rules are NOT re-implemented here: `/eligibility` asks server/policy (issue 6), the one
data-driven rule set the booking and the accept gate use too.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select

from server.auth import CLAIMS_KEY, Role, json_error, requires
from server.store import Doctor, Hospital, records
from server.store.models import SYSTEM_CHAIN, TITLES, WHITELIST_STATUSES
from signaling.handler import CONTEXT_KEY

from .enrollment import EnrollmentError, Whose, enroll, enrollment_error, read_photo
from .models import FaceEnrollment, FaceVerification
from .service import IdentityService

IDENTITY_KEY = web.AppKey("identity", IdentityService)
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def add_routes(app: web.Application) -> None:
    async def admin_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "admin-doctors.html", headers=_NO_STORE)

    app.router.add_get("/admin/doctors", admin_page)
    app.router.add_get("/api/admin/doctors", list_doctors)
    app.router.add_post("/api/admin/doctors", create_doctor)
    app.router.add_get("/api/admin/doctors/{doctor_id}", get_doctor)
    app.router.add_patch("/api/admin/doctors/{doctor_id}", update_doctor)
    app.router.add_put("/api/admin/doctors/{doctor_id}/face", upload_face)
    app.router.add_get("/api/admin/doctors/{doctor_id}/face", read_face)
    app.router.add_get("/api/admin/doctors/{doctor_id}/eligibility", eligibility)
    app.router.add_get("/api/consultations/{cid}/identity", consultation_identity)
    app.router.add_get("/api/consultations/{cid}/identity/{vid}/evidence", read_evidence)


def _actor(request: web.Request) -> str:
    claims = request[CLAIMS_KEY]
    return f"{claims.role}:{claims.subject}"


def _date(value: Any, name: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise json_error(422, "bad_field", f"{name}: a date like 2024-03-01 is needed") from None


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise json_error(422, "bad_field", f"{name}: a text of 1–{limit} characters is needed")
    return value.strip()


def _masked_id(value: Any) -> str:
    text = _text(value, "national_id_masked", 32)
    if "*" not in text:
        raise json_error(422, "bad_field", "national_id_masked: store only a masked national ID "
                         "(e.g. 110***********1234), never the full number")
    return text


_FIELDS = {
    "name": lambda v: _text(v, "name", 100),
    "national_id_masked": _masked_id,
    "licence_no": lambda v: _text(v, "licence_no", 64),
    "hospital_id": lambda v: _text(v, "hospital_id", 40),
    "clinical_practice_since": lambda v: _date(v, "clinical_practice_since"),
    "online_practice_since": lambda v: _date(v, "online_practice_since"),
    "training_passed_on": lambda v: _date(v, "training_passed_on"),
}


def _title(v: Any) -> str:
    if v not in TITLES:
        raise json_error(422, "bad_field", f"title: one of {', '.join(TITLES)}")
    return str(v)


def _specialties(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(s, str) and s.strip() for s in v):
        raise json_error(422, "bad_field", "specialties: a list of names")
    return [s.strip() for s in v]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise json_error(400, "bad_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise json_error(400, "bad_json", "the body must be a JSON object")
    return body


async def _apply(request: web.Request, doctor: Doctor, body: dict[str, Any]) -> dict[str, Any]:
    """Validate and set the fields present in `body`; return what changed (for the event)."""
    changes: dict[str, Any] = {}
    parsers = {**_FIELDS, "title": _title, "specialties": _specialties}
    for name, parse in parsers.items():
        if name in body:
            value = parse(body[name])
            if getattr(doctor, name, None) != value:
                setattr(doctor, name, value)
                changes[name] = value.isoformat() if isinstance(value, date) else value
    if "whitelist_status" in body:
        status = body["whitelist_status"]
        if status not in WHITELIST_STATUSES:
            raise json_error(422, "bad_field", f"whitelist_status: one of "
                             f"{', '.join(WHITELIST_STATUSES)}")
        reason = body.get("whitelist_reason")
        if status != "active" and not (isinstance(reason, str) and reason.strip()):
            raise json_error(422, "bad_field", "whitelist_reason: say why a doctor is "
                             f"{status}")
        if status != doctor.whitelist_status or reason != doctor.whitelist_reason:
            doctor.whitelist_status = status
            doctor.whitelist_reason = reason.strip() if isinstance(reason, str) else None
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


@requires(Role.ADMIN)
async def list_doctors(request: web.Request) -> web.Response:
    async with request.app[CONTEXT_KEY].db.session() as session:
        doctors = list(await session.scalars(select(Doctor).order_by(Doctor.created_at)))
        faces = {f.doctor_id: f for f in await session.scalars(select(FaceEnrollment))}
        hospitals = {h.id: h.name for h in await session.scalars(select(Hospital))}
    await request.app[CONTEXT_KEY].events.append(  # personal data read: who, which
        SYSTEM_CHAIN, "registry.read", _actor(request), {"doctors": len(doctors)})
    return web.json_response({"doctors": [_public(d, faces.get(d.id)) for d in doctors],
                              "hospitals": hospitals}, headers=_NO_STORE)


@requires(Role.ADMIN)
async def get_doctor(request: web.Request) -> web.Response:
    doctor = await _doctor_or_404(request)
    enrollment = await request.app[IDENTITY_KEY].enrollment(doctor.id)
    await request.app[CONTEXT_KEY].events.append(SYSTEM_CHAIN, "registry.read", _actor(request),
                                                 {"doctor": doctor.id})
    return web.json_response(_public(doctor, enrollment), headers=_NO_STORE)


@requires(Role.ADMIN)
async def create_doctor(request: web.Request) -> web.Response:
    body = await _body(request)
    missing = [f for f in ("name", "national_id_masked", "licence_no", "hospital_id", "title")
               if f not in body]
    if missing:
        raise json_error(422, "bad_field", f"required: {', '.join(missing)}")
    doctor = Doctor(specialties=[], whitelist_status="active")
    changes = await _apply(request, doctor, body)
    ctx = request.app[CONTEXT_KEY]
    async with ctx.db.session() as session, session.begin():
        session.add(doctor)
    await ctx.events.append(SYSTEM_CHAIN, "registry.doctor.created", _actor(request),
                            {"doctor": doctor.id, **changes})
    return web.json_response(_public(doctor, None), status=201)


@requires(Role.ADMIN)
async def update_doctor(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT_KEY]
    body = await _body(request)
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


@requires(Role.ADMIN)
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


@requires(Role.ADMIN)
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
    return web.Response(body=data, content_type=kind, headers=_NO_STORE)


@requires(Role.ADMIN)
async def eligibility(request: web.Request) -> web.Response:
    """server/policy's verdict for this doctor: ?on=YYYY-MM-DD&visit_type=first&specialty=…"""
    from server.policy import load_policy
    from server.policy.check import decide

    doctor = await _doctor_or_404(request)
    on = _date(request.query.get("on"), "on") or datetime.now(UTC).date()
    decision = decide(load_policy(), on=on,
                      visit_type=request.query.get("visit_type", "follow_up"),
                      hospital_id=request.query.get("hospital_id", doctor.hospital_id),
                      specialty=request.query.get("specialty",
                                                  (doctor.specialties or [""])[0]),
                      doctor=doctor, patient_id="", prior=None)
    return web.json_response(decision.to_dict(), dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


@requires(Role.ADMIN, Role.AUDITOR, Role.OPS)
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


@requires(Role.ADMIN, Role.AUDITOR)
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
                        headers=_NO_STORE)
