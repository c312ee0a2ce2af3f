"""HTTP routes: pages, the participant's own view, the audit trail and health."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from core.assets import Assets
from core.auth import CLAIMS_KEY, Role, json_error
from core.context import CONTEXT_KEY
from core.endpoint import NO_STORE, endpoint, page
from core.store import records


def add_routes(app: web.Application, static_dir: Path) -> None:
    app.router.add_get("/call", page(
        static_dir / "call.html",
        "The call page for doctors and guardians (the token comes in the fragment)."))
    app.router.add_get("/api/me", me)
    # No HEAD: an audited read (issue 17; tests/test_streaming_routes.py).
    app.router.add_get("/api/consultations/{cid}/events", consultation_events, allow_head=False)
    app.router.add_get("/healthz", healthz)
    # Gzipped for a browser that takes it: the call page's ~150 KB is most of a slow link's wait
    # before the first picture (core/assets.py).
    app.router.add_get("/static/{path:.+}", Assets(static_dir).handle)




@endpoint(Role.DOCTOR, Role.GUARDIAN)
async def me(request: web.Request) -> web.Response:
    """What a participant's page shows: who they are and which consultation they joined."""
    claims = request[CLAIMS_KEY]
    db = request.app[CONTEXT_KEY].db
    consultation = await records.get_consultation(db, claims.consultation_id)
    if consultation is None:
        raise json_error(404, "no_consultation", "no such consultation")
    hospital = await records.get_hospital(db, consultation.hospital_id)
    doctor = await records.get_doctor(db, consultation.doctor_id)
    patient = await records.get_patient(db, consultation.patient_id)
    return web.json_response({
        "role": str(claims.role),
        "subject": claims.subject,
        "consultation": {
            "id": consultation.id,
            "state": consultation.state,
            "hospital": hospital.name if hospital else None,
            "specialty": consultation.specialty,
            "doctor": doctor.name if doctor else None,
            "doctor_title": doctor.title if doctor else None,
            "patient": patient.name if patient else None,
            "scheduled_at": consultation.scheduled_at.isoformat(),
            "visit_type": consultation.visit_type,
        },
    }, headers=NO_STORE)


@endpoint(Role.AUDITOR, Role.ADMIN, Role.OPS, Role.DOCTOR, Role.QUALITY)
async def consultation_events(request: web.Request) -> web.Response:
    """The consultation's audit trail and whether its hash chain is intact."""
    ctx = request.app[CONTEXT_KEY]
    cid = request.match_info["cid"]
    claims = request[CLAIMS_KEY]
    if await records.get_consultation(ctx.db, cid) is None:
        raise json_error(404, "no_consultation", "no such consultation")
    await ctx.events.append(cid, "audit.read", f"{claims.role}:{claims.subject}",
                            {"what": "events"})
    events = await ctx.events.events(cid)
    report = await ctx.events.verify(cid)
    return web.json_response({
        "consultation": cid,
        "chain": {"ok": report.ok, "count": report.count, "problems": report.problems},
        "events": [
            {"seq": e.seq, "at": e.at.isoformat(), "kind": e.kind, "actor": e.actor,
             "data": e.data, "hash": e.hash}
            for e in events
        ],
    })


@endpoint()
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers (readiness is /readyz)."""
    return web.json_response({"ok": True})
