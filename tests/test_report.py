"""The periodic progress report against a seeded month: JSON and CSV say what the seeded facts say
(computed from the facts, tests/report_fixtures.py), every report is an event, the range and the
roles are checked."""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

import pytest

from core.auth import BOUND_ROLES, Role
from core.store import SYSTEM_CHAIN
from server.app import STATIC_DIR as STATIC
from server.report import empty, flatten

from .node_fixtures import Node, node_settings, start_node
from .report_fixtures import FACTS, expected, month_days, month_text, seed

KEYS = [key for key, _ in flatten(empty())]


def _bearer(node: Node, role: Role, subject: str = "r-1") -> dict[str, str]:
    cid = "c_x" if role in BOUND_ROLES else None
    return {"Authorization": f"Bearer {node.token(role, subject, cid)}"}


async def _get(node: Node, path: str, headers: dict[str, str], status: int = 200) -> Any:
    async with node.session.get(node.url + path, headers=headers) as r:
        body = await r.read()
        assert r.status == status, (r.status, body[:500])
        if r.content_type == "application/json":
            return await r.json()
        return r.content_type, body


def _json_groups(report: dict[str, Any]) -> dict[tuple[str, str], Counter]:
    return {(h["id"], s["specialty"]): +Counter(dict(flatten(s["counts"])))
            for h in report["hospitals"] for s in h["specialties"]}


def _csv_rows(body: bytes) -> list[dict[str, str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")  # spreadsheets read the Chinese
    return list(csv.DictReader(io.StringIO(text[1:])))


def _counts(row: dict[str, str]) -> Counter:
    return +Counter({k: int(row[k]) for k in KEYS})


def _sum(groups: dict[Any, Counter]) -> Counter:
    total = Counter()
    for counts in groups.values():
        total.update(counts)
    return +total


@pytest.fixture
async def any_db_node(tmp_path, database_url: str):
    """A node on SQLite and on PostgreSQL (the report's queries run on both)."""
    async with start_node(node_settings(tmp_path / "node", database_url=database_url)) as n:
        yield n


async def test_a_seeded_month_in_json_and_csv(any_db_node: Node) -> None:
    node = any_db_node
    hospitals = await seed(node)
    want = expected(FACTS, hospitals)
    admin = _bearer(node, Role.ADMIN, "planner")
    month = month_text()

    report = await _get(node, f"/api/reports/progress?month={month}", admin)
    assert _json_groups(report) == want
    assert +Counter(dict(flatten(report["total"]))) == _sum(want)
    for h in report["hospitals"]:
        assert +Counter(dict(flatten(h["total"]))) == _sum(
            {k: v for k, v in want.items() if k[0] == h["id"]})
        assert h["name"]  # the hospital as the registry names it
    first, last = month_days()
    assert report["period"] == {"from": first.isoformat(), "to": last.isoformat(),
                                "month": month, "timezone": "Asia/Shanghai"}
    assert report["consultations"] == sum(f.month == 0 for f in FACTS)
    assert [m["key"] for m in report["measures"]] == KEYS
    # A few numbers spelled out, so a reader sees what the comparison above covers.
    growth = want[(hospitals[0], "儿童生长发育")]
    assert growth["first.terminated_reason.guardian_absent"] == 1
    assert growth["complaints.opened"] == 2  # one about last month's consultation, made now
    assert growth["pediatric.outcome.terminated"] == 1

    kind, body = await _get(node, f"/api/reports/progress.csv?month={month}", admin)
    assert kind == "text/csv"
    rows = _csv_rows(body)
    by_group = {(r["hospital_id"], r["specialty"]): _counts(r)
                for r in rows if r["scope"] == "specialty"}
    assert by_group == want
    totals = {r["hospital_id"]: _counts(r) for r in rows if r["scope"] == "hospital"}
    assert totals == {h: _sum({k: v for k, v in want.items() if k[0] == h})
                      for h in {k[0] for k in want}}
    assert [_counts(r) for r in rows if r["scope"] == "all"] == [_sum(want)]

    # Each report generated is an event on the system chain: who, which range, which format.
    logged = [(e.actor, e.data) for e in await node.ctx.events.events(SYSTEM_CHAIN)
              if e.kind == "report.progress"]
    assert [(a, d["format"], d["from"], d["to"], d["month"]) for a, d in logged] == [
        ("admin:planner", "json", first.isoformat(), last.isoformat(), month),
        ("admin:planner", "csv", first.isoformat(), last.isoformat(), month)]
    assert report["generated"]["by"] == "admin:planner"
    assert (await node.ctx.events.verify(SYSTEM_CHAIN)).ok


async def test_a_date_range_and_one_hospital(node: Node) -> None:
    hospitals = await seed(node)
    regulator = _bearer(node, Role.REGULATOR, "nhc")
    # The month before, as a range: its consultation counts; what happened this month does not.
    first, last = month_days(-1)
    report = await _get(node, f"/api/reports/progress?from={first}&to={last}", regulator)
    assert _json_groups(report) == expected(FACTS, hospitals, offset=-1)
    assert report["period"]["month"] is None
    # One hospital only: what it can send as it is.
    second = hospitals[1]
    report = await _get(node, f"/api/reports/progress?month={month_text()}&hospital={second}",
                        regulator)
    assert [h["id"] for h in report["hospitals"]] == [second]
    assert _json_groups(report) == {k: v for k, v in expected(FACTS, hospitals).items()
                                    if k[0] == second}


@pytest.mark.parametrize("query, field", [
    ("", "from"),
    ("month=2026-13", "month"),
    ("month=26-11", "month"),
    ("month=2026-11&from=2026-11-01&to=2026-11-30", "month"),
    ("from=2026-11-01", "to"),
    ("from=2026-11-30&to=2026-11-01", "to"),
    ("from=2025-01-01&to=2026-01-02", "to"),  # 367 days: 366 is the most
    ("from=1800-01-01&to=1800-01-02", "from"),
    ("month=2026-11&extra=1", "extra"),
    ("month=2026-11&hospital=%3Cscript%3E", "hospital"),
])
async def test_bad_ranges_are_refused(node: Node, query: str, field: str) -> None:
    for path in ("/api/reports/progress", "/api/reports/progress.csv"):
        body = await _get(node, f"{path}?{query}", _bearer(node, Role.ADMIN), status=422)
        assert body["error"]["code"] == "bad_query" and body["error"]["field"] == field, body
    assert not [e for e in await node.ctx.events.events(SYSTEM_CHAIN)
                if e.kind == "report.progress"]


async def test_adverse_events_are_named_as_the_letter_and_the_pages_name_them(
        node: Node) -> None:
    """负性事件 (letter 482, clause 五: 负性事件处置预案), as on the call, quality and worklist
    pages: never 不良事件 on the printed report."""
    report = await _get(node, "/api/reports/progress?month=2026-11", _bearer(node, Role.ADMIN))
    sections = {s["key"]: s["zh"] for s in report["sections"]}
    assert sections["adverse_events"] == "负性事件"
    labels = [s["zh"] for s in report["sections"]] + [m["zh"] for m in report["measures"]]
    page = (STATIC / "report.html").read_text() + (STATIC / "report.js").read_text()
    assert "不良事件" not in "".join(labels) + page
    assert "负性事件" in (STATIC / "call.html").read_text()


async def test_366_days_is_allowed(node: Node) -> None:
    report = await _get(node, "/api/reports/progress?from=2024-01-01&to=2024-12-31",
                        _bearer(node, Role.ADMIN))
    assert report["hospitals"] == [] and report["consultations"] == 0


@pytest.mark.parametrize("path", ["/api/reports/progress?month=2026-11",
                                  "/api/reports/progress.csv?month=2026-11"])
async def test_only_admin_and_the_regulator_get_reports(node: Node, path: str) -> None:
    for role in Role:
        if role in (Role.ADMIN, Role.REGULATOR):
            await _get(node, path, _bearer(node, role))
        else:
            body = await _get(node, path, _bearer(node, role), status=403)
            assert body["error"]["code"] == "wrong_role", role
    assert (await _get(node, path, {}, status=401))["error"]["code"] == "no_token"
    bad = {"Authorization": "Bearer not.a.token"}
    assert (await _get(node, path, bad, status=401))["error"]["code"] == "bad_token"


async def test_the_report_page_is_a_public_shell(node: Node) -> None:
    kind, body = await _get(node, "/report", {})
    assert kind == "text/html" and b"/static/report.js" in body
