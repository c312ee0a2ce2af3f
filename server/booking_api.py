"""HTTP routes for issue 6: booking (admin), the records a booking needs, consent text, the
referral by link, and the regulator export.

Every refusal is JSON `{"error": {"code", "message", ...}}` like the rest of the API, with the
offending `field`, or for a policy refusal the failed `rule` in zh and en and the whole decision.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from core import consent, fields
from core.auth import CLAIMS_KEY, TOKENS_KEY, Role
from core.context import CONTEXT_KEY
from core.endpoint import NO_STORE, endpoint
from core.fields import Day, Id, Instant, MaskedNationalId, Name
from core.policy import load_policy
from core.referral import get_referral, referral_json
from core.store import records
from core.store.clinical import PriorDiagnosis
from core.store.models import VISIT_TYPES
from server import export
from server.booking import BookingRefused, BookingRequest, UnknownRecord, book
from server.demo import join_link

# A booking a little in the past is a clock skew; more is a mistake.
PAST_TOLERANCE = timedelta(hours=1)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/consultations", create_consultation)
    app.router.add_post("/api/patients", create_patient)
    app.router.add_post("/api/guardians", create_guardian)
    app.router.add_post("/api/prior-diagnoses", create_prior_diagnosis)
    # No HEAD on an audited read: it would log `consent.shown` (or a read) for a text that was
    # never sent (issue 17; tests/test_streaming_routes.py).
    app.router.add_get("/api/consent", consent_text, allow_head=False)
    app.router.add_get("/api/consultations/{cid}/referral", consultation_referral,
                       allow_head=False)
    # No HEAD (aiohttp adds one to every GET): it would stream the export and log it as made.
    app.router.add_get("/api/export/consultations", export.consultations, allow_head=False)


def error(status: int, code: str, message: str, **extra: Any) -> web.HTTPException:
    body = json.dumps({"error": {"code": code, "message": message, **extra}},
                      ensure_ascii=False)
    kinds: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict,
        422: web.HTTPUnprocessableEntity}
    return kinds[status](text=body, content_type="application/json")


# -- what each route accepts --------------------------------------------------------------------

class NewConsultation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hospital_id: Id
    specialty: fields.text(100)  # type: ignore[valid-type]
    doctor_id: Id
    patient_id: Id
    guardian_id: Id
    visit_type: Literal[VISIT_TYPES]  # type: ignore[valid-type]
    scheduled_at: Instant
    prior_diagnosis_id: Id | None = None


class NewPatient(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    birth_date: Day
    national_id_masked: MaskedNationalId | None = None


class NewGuardian(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient_id: Id
    name: Name
    relation: fields.text(40)  # type: ignore[valid-type]
    national_id_masked: MaskedNationalId | None = None


class NewPriorDiagnosis(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient_id: Id
    institution: fields.text(200)  # type: ignore[valid-type]
    institution_hospital_id: Id | None = None
    institution_is_physical: bool = True
    diagnosis: fields.text(500)  # type: ignore[valid-type]
    diagnosed_on: Day
    document_ref: fields.text(200)  # type: ignore[valid-type]


def _not_future(day: date, name: str) -> None:
    if day > date.today():
        raise error(422, "bad_field", f"'{name}' is in the future", field=name)


def _actor(request: web.Request) -> str:
    claims = request[CLAIMS_KEY]
    return f"{claims.role}:{claims.subject}"


# -- booking -------------------------------------------------------------------------------------

@endpoint(Role.ADMIN, body=NewConsultation)
async def create_consultation(request: web.Request, body: NewConsultation) -> web.Response:
    """Book a consultation; 201 with the consultation and both join links, or why not."""
    req = BookingRequest(**body.model_dump())
    ctx = request.app[CONTEXT_KEY]
    if req.scheduled_at < ctx.clock.now() - PAST_TOLERANCE:
        raise error(422, "bad_field", "'scheduled_at' is in the past", field="scheduled_at")
    try:
        consultation, decision = await book(ctx.db, ctx.events, load_policy(), req,
                                            _actor(request))
    except UnknownRecord as exc:
        raise error(422, "unknown_id", exc.message, field=exc.field) from None
    except BookingRefused as exc:
        failed = exc.decision.first_failure
        assert failed is not None
        raise error(422, "ineligible", failed.en, rule=failed.rule, zh=failed.zh,
                    decision=exc.decision.to_dict()) from None
    settings, tokens = ctx.settings, request.app[TOKENS_KEY]
    cid = consultation.id
    return web.json_response({
        "consultation": {
            "id": cid, "state": consultation.state, "hospital_id": consultation.hospital_id,
            "specialty": consultation.specialty, "doctor_id": consultation.doctor_id,
            "patient_id": consultation.patient_id, "guardian_id": consultation.guardian_id,
            "visit_type": consultation.visit_type,
            "scheduled_at": consultation.scheduled_at.isoformat(),
            "prior_diagnosis_id": req.prior_diagnosis_id,
        },
        "eligibility": decision.to_dict(),
        "links": {
            "doctor": join_link(settings, tokens, Role.DOCTOR, req.doctor_id, cid),
            "guardian": join_link(settings, tokens, Role.GUARDIAN, req.guardian_id, cid),
        },
    }, status=201, headers=NO_STORE)


# -- the records a booking needs (hospitals and doctors: the registry, issue 3) -------------------

@endpoint(Role.ADMIN, body=NewPatient)
async def create_patient(request: web.Request, body: NewPatient) -> web.Response:
    """Register a patient (least data: a national ID only masked)."""
    _not_future(body.birth_date, "birth_date")
    patient = await records.create_patient(request.app[CONTEXT_KEY].db, **body.model_dump())
    return web.json_response({"id": patient.id, "name": patient.name,
                              "birth_date": patient.birth_date.isoformat()}, status=201)


@endpoint(Role.ADMIN, body=NewGuardian)
async def create_guardian(request: web.Request, body: NewGuardian) -> web.Response:
    """Register a patient's guardian (least data: a national ID only masked)."""
    db = request.app[CONTEXT_KEY].db
    patient_id = body.patient_id
    if await records.get_patient(db, patient_id) is None:
        raise error(422, "unknown_id", f"no patient {patient_id!r}", field="patient_id")
    guardian = await records.create_guardian(db, **body.model_dump())
    return web.json_response({"id": guardian.id, "patient_id": patient_id,
                              "name": guardian.name, "relation": guardian.relation}, status=201)


@endpoint(Role.ADMIN, body=NewPriorDiagnosis)
async def create_prior_diagnosis(request: web.Request, body: NewPriorDiagnosis) -> web.Response:
    """A diagnosis made in person at a hospital: what a follow-up online visit needs on file."""
    db = request.app[CONTEXT_KEY].db
    patient_id = body.patient_id
    if await records.get_patient(db, patient_id) is None:
        raise error(422, "unknown_id", f"no patient {patient_id!r}", field="patient_id")
    hospital_id = body.institution_hospital_id
    physical = body.institution_is_physical
    if hospital_id is not None:
        hospital = await records.get_hospital(db, hospital_id)
        if hospital is None:
            raise error(422, "unknown_id", f"no hospital {hospital_id!r}",
                        field="institution_hospital_id")
        physical = hospital.is_physical
    _not_future(body.diagnosed_on, "diagnosed_on")
    row = PriorDiagnosis(**{**body.model_dump(), "institution_is_physical": physical})
    async with db.session() as session, session.begin():
        session.add(row)
    return web.json_response({
        "id": row.id, "patient_id": patient_id, "institution": row.institution,
        "institution_is_physical": row.institution_is_physical, "diagnosis": row.diagnosis,
        "diagnosed_on": row.diagnosed_on.isoformat(), "document_ref": row.document_ref,
    }, status=201)


# -- consent and referral, for the call page -------------------------------------------------------

@endpoint(Role.DOCTOR, Role.GUARDIAN)
async def consent_text(request: web.Request) -> web.Response:
    """The current consent text; for the guardian, showing it is an event (what was shown)."""
    ctx = request.app[CONTEXT_KEY]
    claims = request[CLAIMS_KEY]
    cid = str(claims.consultation_id)
    if await records.get_consultation(ctx.db, cid) is None:  # a token outliving its booking
        raise error(404, "no_consultation", "no such consultation")
    text = consent.consent_text()
    given = await consent.consent_given(ctx.db, cid)
    if claims.role == Role.GUARDIAN and given is None:
        await ctx.events.append(cid, "consent.shown", _actor(request),
                                {"version": text["version"]})
    return web.json_response({
        "text": text,
        "given": given is not None,
        "at": given.accepted_at.isoformat() if given else None,
    }, headers=NO_STORE)


@endpoint(Role.DOCTOR, Role.GUARDIAN, Role.AUDITOR, Role.ADMIN)
async def consultation_referral(request: web.Request) -> web.Response:
    """The referral of a terminated consultation, to show or print again later."""
    ctx = request.app[CONTEXT_KEY]
    cid = request.match_info["cid"]
    consultation = await records.get_consultation(ctx.db, cid)
    if consultation is None:
        raise error(404, "no_consultation", "no such consultation")
    row = await get_referral(ctx.db, cid)
    if row is None:
        raise error(404, "no_referral", "this consultation has no referral",
                    zh="本次问诊没有转诊信息")
    await ctx.events.append(cid, "referral.read", _actor(request), {})
    hospital = await records.get_hospital(ctx.db, consultation.hospital_id)
    patient = await records.get_patient(ctx.db, consultation.patient_id)
    return web.json_response({
        "consultation": {
            "id": cid, "state": consultation.state,
            "hospital": hospital.name if hospital else None,
            "specialty": consultation.specialty,
            "patient": patient.name if patient else None,
            "ended_at": consultation.ended_at.isoformat() if consultation.ended_at else None,
        },
        **referral_json(row),
    }, headers=NO_STORE)
