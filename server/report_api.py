"""HTTP: the periodic progress report (server/report.py) as JSON, CSV and a printable page.

For admin and the regulator. Every report generated is an event on the system chain naming who
asked, for which range (and hospital) and in which format; the printed page shows that event's
number, so a report a hospital sends can be traced to the moment it was made.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.auth import CLAIMS_KEY, Role, json_error
from core.context import CONTEXT_KEY
from core.endpoint import NO_STORE, endpoint, page
from core.fields import Day, Id, Month
from core.store import SYSTEM_CHAIN
from server.report import Period, build, to_csv
from server.report_labels import labelled

REPORT_ROLES = (Role.ADMIN, Role.REGULATOR)


def add_routes(app: web.Application, static_dir: Path) -> None:
    app.router.add_get("/report", page(
        static_dir / "report.html",
        "The printable progress report (it asks for an admin or regulator token)."))
    # No HEAD: making the report is an event (issue 17; tests/test_streaming_routes.py).
    app.router.add_get("/api/reports/progress", progress_json, allow_head=False)
    app.router.add_get("/api/reports/progress.csv", progress_csv, allow_head=False)


class ReportQuery(BaseModel):
    """A month, or a range of Beijing dates (both inclusive); optionally one hospital."""

    model_config = ConfigDict(extra="forbid")
    month: Month | None = None
    from_: Day | None = Field(None, alias="from")
    to: Day | None = None
    hospital: Id | None = None


def period_of(query: ReportQuery) -> Period:
    if query.month is not None:
        if query.from_ is not None or query.to is not None:
            raise json_error(422, "bad_query", "give either 'month' or 'from' and 'to', not both",
                             field="month")
        return Period.of_month(query.month)
    for name, value in (("from", query.from_), ("to", query.to)):
        if value is None:
            raise json_error(422, "bad_query", "give 'month' (YYYY-MM), or 'from' and 'to' "
                             "(YYYY-MM-DD, Beijing dates)", field=name)
    assert query.from_ is not None and query.to is not None
    period = Period(query.from_, query.to)
    why = period.check()
    if why:
        raise json_error(422, "bad_query", why, field="to")
    return period


async def _report(request: web.Request, query: ReportQuery, fmt: str) -> dict[str, Any]:
    """Build the report and log that it was made (who, which range, which format)."""
    ctx = request.app[CONTEXT_KEY]
    claims = request[CLAIMS_KEY]
    period = period_of(query)
    report = labelled(await build(ctx.db, period, ctx.settings.presence.pediatric_age,
                                  query.hospital))
    actor = f"{claims.role}:{claims.subject}"
    event = await ctx.events.append(SYSTEM_CHAIN, "report.progress", actor, {
        "from": period.first.isoformat(), "to": period.last.isoformat(),
        "month": period.month, "hospital": query.hospital, "format": fmt,
        "consultations": report["consultations"]})
    report["hospital_filter"] = query.hospital
    report["generated"] = {"at": event.at.isoformat(), "by": actor,
                           "event": f"{SYSTEM_CHAIN}#{event.seq}"}
    return report


@endpoint(*REPORT_ROLES, query=ReportQuery)
async def progress_json(request: web.Request, query: ReportQuery) -> web.Response:
    """The progress report for a month or a date range, per hospital and specialty (JSON)."""
    report = await _report(request, query, "json")
    return web.json_response(report, headers=NO_STORE,
                             dumps=functools.partial(json.dumps, ensure_ascii=False))


@endpoint(*REPORT_ROLES, query=ReportQuery)
async def progress_csv(request: web.Request, query: ReportQuery) -> web.Response:
    """The same report as CSV (UTF-8 with a byte-order mark, so spreadsheets read the Chinese)."""
    report = await _report(request, query, "csv")
    name = report["period"]["month"] or f"{report['period']['from']}_{report['period']['to']}"
    return web.Response(
        body=("\ufeff" + to_csv(report)).encode("utf-8"),
        content_type="text/csv", charset="utf-8",
        headers={**NO_STORE,
                 "Content-Disposition": f'attachment; filename="progress-{name}.csv"'})
