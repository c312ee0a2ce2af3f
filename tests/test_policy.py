"""The eligibility policy at every boundary: window days, pilot hospitals and specialties, and a
doctor one day short of each requirement (leap days included). Pure: no database."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from core.policy import (
    DEFAULT_POLICY,
    Facts,
    consultation_date,
    evaluate,
    load_policy,
    years_after,
)
from core.policy.engine import DoctorFacts, PriorDiagnosisFacts
from core.policy.load import RULES, PolicyError, parse_policy

POLICY = load_policy()
BCH, CIH = "h_bj_bch", "h_bj_cih"
DAY = date(2026, 6, 15)

# Every requirement met on DAY with room to spare, except where a test moves one date.
DOCTOR = DoctorFacts(hospital_id=BCH, licence_no="110110000012345", title="attending",
                     whitelist_status="active", clinical_practice_since=date(2015, 7, 1),
                     online_practice_since=date(2023, 3, 1),
                     training_passed_on=date(2025, 11, 20))


def first_visit(on: date = DAY, **changes: object) -> Facts:
    facts = Facts(on=on, visit_type="first", hospital_id=BCH, specialty="儿童生长发育",
                  doctor=DOCTOR)
    return replace(facts, **changes)  # type: ignore[arg-type]


def doctor(**changes: object) -> DoctorFacts:
    return replace(DOCTOR, **changes)  # type: ignore[arg-type]


def failed(facts: Facts) -> list[str]:
    return [r.rule for r in evaluate(POLICY, facts).failed]


LETTER = "国卫办医政函〔2025〕482号"
# The letter's parts as its text numbers them; a clause cited from it must be one of these.
LETTER_CLAUSES = {"正文首段 opening paragraph", "一", "二", "三", "四", "五", "六"}
UNCONFIRMED = "clause to be confirmed"
MEASURES = "互联网诊疗管理办法（试行）（国卫医发〔2018〕25号）"
# Clauses of national rules that someone has checked, by rule: the document and its article.
CONFIRMED = {"prior_diagnosis": (MEASURES, "第十六条")}


def test_policy_file_names_the_pilot() -> None:
    assert POLICY.hospital_ids == {BCH, CIH}
    names = {h.id: h for h in POLICY.hospitals}
    assert names[BCH].name.startswith("首都医科大学附属北京儿童医院")
    assert names[CIH].name.startswith("首都医科大学附属首都儿童医学中心")
    assert names[CIH].former_names[0].startswith("首都儿科研究所附属儿童医院")
    assert "首都儿科研究所" not in DEFAULT_POLICY.read_text(encoding="utf-8").split(
        '"former_names"')[0]
    assert POLICY.specialties == ("儿童生长发育", "儿童营养", "儿童皮肤疾病")
    assert (POLICY.window_from, POLICY.window_to) == (date(2026, 1, 1), date(2026, 12, 31))


@pytest.mark.parametrize(("on", "allowed"), [
    (date(2025, 12, 31), False), (date(2026, 1, 1), True),
    (date(2026, 12, 31), True), (date(2027, 1, 1), False)])
def test_pilot_window_boundaries(on: date, allowed: bool) -> None:
    decision = evaluate(POLICY, first_visit(on))
    assert decision.allowed is allowed
    assert failed(first_visit(on)) == ([] if allowed else ["pilot_window"])
    if not allowed:
        rule = decision.first_failure
        assert rule is not None and rule.rule == "pilot_window"
        assert "试点期" in rule.zh and "outside the first-visit pilot" in rule.en
        assert on.isoformat() in rule.en


@pytest.mark.parametrize("hospital", [BCH, CIH])
@pytest.mark.parametrize("specialty", ["儿童生长发育", "儿童营养", "儿童皮肤疾病"])
def test_each_pilot_hospital_and_specialty(hospital: str, specialty: str) -> None:
    facts = first_visit(hospital_id=hospital, specialty=specialty,
                        doctor=doctor(hospital_id=hospital))
    assert evaluate(POLICY, facts).allowed


def test_non_pilot_hospital_and_specialty_refused() -> None:
    other = "h_tianjin_1"
    assert failed(first_visit(hospital_id=other, doctor=doctor(hospital_id=other))) == [
        "pilot_hospital"]
    assert failed(first_visit(specialty="儿童呼吸")) == ["pilot_specialty"]


def test_consultation_date_is_the_beijing_calendar_day() -> None:
    # 16:00 UTC on 31 December is already 1 January in Beijing: inside the pilot.
    assert consultation_date(datetime(2025, 12, 31, 16, 0, tzinfo=UTC)) == date(2026, 1, 1)
    assert consultation_date(datetime(2025, 12, 31, 15, 59, tzinfo=UTC)) == date(2025, 12, 31)
    assert consultation_date(datetime(2026, 12, 31, 15, 59, tzinfo=UTC)) == date(2026, 12, 31)
    assert consultation_date(datetime(2026, 12, 31, 16, 0, tzinfo=UTC)) == date(2027, 1, 1)
    with pytest.raises(ValueError):
        consultation_date(datetime(2026, 1, 1))


def test_years_after_leap_days() -> None:
    assert years_after(date(2023, 6, 15), 3) == date(2026, 6, 15)
    assert years_after(date(2024, 2, 29), 1) == date(2025, 2, 28)
    assert years_after(date(2020, 2, 29), 4) == date(2024, 2, 29)


# One day short of each dated requirement, and exactly on it.
@pytest.mark.parametrize(("field", "years", "rule"), [
    ("clinical_practice_since", 3, "doctor_clinical_practice"),
    ("online_practice_since", 1, "doctor_online_practice")])
def test_one_day_short_of_practice_years(field: str, years: int, rule: str) -> None:
    exactly = date(DAY.year - years, DAY.month, DAY.day)
    assert failed(first_visit(doctor=doctor(**{field: exactly}))) == []
    one_day_short = date(DAY.year - years, DAY.month, DAY.day + 1)
    assert failed(first_visit(doctor=doctor(**{field: one_day_short}))) == [rule]
    assert failed(first_visit(doctor=doctor(**{field: None}))) == [rule]


def passed(facts: Facts, rule: str) -> bool:
    return next(r.passed for r in evaluate(POLICY, facts).rules if r.rule == rule)


@pytest.mark.parametrize(("field", "years", "rule"), [
    ("clinical_practice_since", 3, "doctor_clinical_practice"),
    ("online_practice_since", 1, "doctor_online_practice")])
def test_practice_since_a_leap_day(field: str, years: int, rule: str) -> None:
    """Started on 29 Feb 2024: the years are complete on 28 Feb of the (common) due year."""
    start = date(2024, 2, 29)
    due = date(2024 + years, 2, 28)
    assert passed(first_visit(on=due, doctor=doctor(**{field: start})), rule)
    assert not passed(first_visit(on=date(2024 + years, 2, 27), doctor=doctor(**{field: start})),
                      rule)


def test_exactly_three_years_at_the_end_of_february_in_the_pilot() -> None:
    since = doctor(clinical_practice_since=date(2023, 2, 28))
    assert failed(first_visit(on=date(2026, 2, 28), doctor=since)) == []
    assert failed(first_visit(on=date(2026, 2, 27), doctor=since)) == ["doctor_clinical_practice"]


def test_training_passed_one_day_late() -> None:
    assert failed(first_visit(doctor=doctor(training_passed_on=DAY))) == []
    assert failed(first_visit(doctor=doctor(training_passed_on=date(2026, 6, 16)))) == [
        "doctor_training"]
    assert failed(first_visit(doctor=doctor(training_passed_on=None))) == ["doctor_training"]


@pytest.mark.parametrize(("title", "ok"), [("resident", False), ("attending", True),
                                           ("associate_chief", True), ("chief", True)])
def test_title_attending_or_above(title: str, ok: bool) -> None:
    assert failed(first_visit(doctor=doctor(title=title))) == ([] if ok else ["doctor_title"])


def test_licence_whitelist_and_registration() -> None:
    assert failed(first_visit(doctor=doctor(licence_no=""))) == ["doctor_licensed"]
    assert failed(first_visit(doctor=doctor(whitelist_status="suspended"))) == [
        "doctor_whitelisted"]
    assert failed(first_visit(doctor=doctor(hospital_id=CIH))) == [
        "doctor_registered_at_hospital"]


def test_decision_lists_every_rule_with_reasons_in_both_languages() -> None:
    decision = evaluate(POLICY, first_visit(on=date(2027, 1, 1),
                                            doctor=doctor(title="resident")))
    data = decision.to_dict()
    assert data["allowed"] is False
    assert data["failed"] == ["pilot_window", "doctor_title"]
    assert [r["rule"] for r in data["rules"]] == [
        "doctor_licensed", "doctor_clinical_practice", "doctor_registered_at_hospital",
        "doctor_whitelisted", "pilot_window", "pilot_hospital", "pilot_specialty",
        "doctor_title", "doctor_online_practice", "doctor_training"]
    assert all(r["zh"] and r["en"] for r in data["rules"])
    json.dumps(data)  # an event payload


PRIOR = PriorDiagnosisFacts(id="dx_1", patient_matches=True, institution="北京儿童医院",
                            institution_is_physical=True, diagnosis="矮小症",
                            diagnosed_on=date(2025, 9, 1), document_ref="EMR-1")


def follow_up(on: date, prior: PriorDiagnosisFacts | None, **changes: object) -> Facts:
    return first_visit(on, visit_type="follow_up", prior_diagnosis=prior, **changes)


def test_follow_up_needs_a_prior_diagnosis_from_a_physical_hospital() -> None:
    # Outside the pilot (any hospital, any date): a follow-up is about the prior diagnosis.
    other = "h_tianjin_1"
    assert failed(follow_up(date(2027, 3, 1), PRIOR, hospital_id=other, specialty="儿童呼吸",
                            doctor=doctor(hospital_id=other, title="resident"))) == []
    assert failed(follow_up(DAY, None)) == ["prior_diagnosis"]
    assert failed(follow_up(DAY, replace(PRIOR, institution_is_physical=False))) == [
        "prior_diagnosis"]
    assert failed(follow_up(DAY, replace(PRIOR, patient_matches=False))) == ["prior_diagnosis"]
    assert failed(follow_up(date(2025, 8, 31), PRIOR)) == ["prior_diagnosis"]
    assert failed(follow_up(date(2025, 9, 1), PRIOR)) == []
    # The doctor rules hold for follow-ups too.
    assert failed(follow_up(DAY, PRIOR, doctor=doctor(whitelist_status="revoked"))) == [
        "doctor_whitelisted"]


def test_a_broken_policy_file_fails_loudly() -> None:
    raw = json.loads(DEFAULT_POLICY.read_text(encoding="utf-8"))
    raw["window"] = {"from": "2026-12-31", "to": "2026-01-01"}
    with pytest.raises(PolicyError, match="before"):
        parse_policy(raw)
    raw["window"] = {"from": "2026-01-01", "to": "2026-12-31"}
    raw["doctor"]["first_visit"]["min_title"] = "professor"
    with pytest.raises(PolicyError, match="min_title"):
        parse_policy(raw)


def test_every_rule_cites_its_source() -> None:
    first = evaluate(POLICY, first_visit())
    follow = evaluate(POLICY, follow_up(DAY, PRIOR))
    applied = {r.rule for r in first.rules + follow.rules}
    assert applied == set(RULES) == set(POLICY.sources)
    for result in first.rules + follow.rules:
        source = result.source
        assert source is not None and source.document and source.clause, result.rule
        # A clause of the letter is one the letter has, a national rule's one that was checked
        # (CONFIRMED); anything else says it is unchecked.
        assert (source.document == LETTER and source.clause in LETTER_CLAUSES) or (
            CONFIRMED.get(result.rule) == (source.document, source.clause)) or (
            source.clause == UNCONFIRMED), (result.rule, source)
    follow_cited = {r["rule"]: r["source"] for r in follow.to_dict()["rules"]}
    assert (follow_cited["prior_diagnosis"]["document"],
            follow_cited["prior_diagnosis"]["clause"]) == (MEASURES, "第十六条")
    cited = {r["rule"]: r["source"] for r in first.to_dict()["rules"]}
    assert cited["doctor_clinical_practice"] == {
        "document": LETTER, "clause": "三", "about": POLICY.sources[
            "doctor_clinical_practice"].about}
    assert cited["pilot_window"]["clause"] == "六"


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.pop("doctor_training"), "no source for rule.*doctor_training"),
    (lambda s: s.__setitem__("pilot_window", {"document": LETTER, "clause": " "}),
     "must not be empty"),
    (lambda s: s.__setitem__("pilot_window", {"document": LETTER}), "pilot_window.clause"),
    (lambda s: s.__setitem__("pilot_windoww", {"document": LETTER, "clause": "六"}),
     "no such rule pilot_windoww"),
])
def test_a_rule_without_a_source_is_refused(change, message: str) -> None:  # type: ignore[no-untyped-def]
    raw = json.loads(DEFAULT_POLICY.read_text(encoding="utf-8"))
    change(raw["sources"])
    with pytest.raises(PolicyError, match=message):
        parse_policy(raw)
    del raw["sources"]
    with pytest.raises(PolicyError, match="sources"):
        parse_policy(raw)
