"""Apply a Policy to the facts of one consultation: every rule, its result, and why in plain words.

Pure functions over plain dataclasses (no database), so each boundary can be tested directly and
the same evaluation runs at booking and again when the consultation starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any

from core.policy.dates import years_after
from core.policy.load import Policy, Source

TITLE_NAMES = {"resident": "住院医师", "attending": "主治医师",
               "associate_chief": "副主任医师", "chief": "主任医师"}


@dataclass(frozen=True)
class DoctorFacts:
    hospital_id: str
    licence_no: str | None
    title: str
    whitelist_status: str
    clinical_practice_since: date | None
    online_practice_since: date | None
    training_passed_on: date | None


@dataclass(frozen=True)
class PriorDiagnosisFacts:
    id: str
    patient_matches: bool
    institution: str
    institution_is_physical: bool
    diagnosis: str
    diagnosed_on: date
    document_ref: str


@dataclass(frozen=True)
class Facts:
    on: date  # the consultation's calendar date in the policy's time zone
    visit_type: str  # first | follow_up
    hospital_id: str
    specialty: str
    doctor: DoctorFacts
    prior_diagnosis: PriorDiagnosisFacts | None = None


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    zh: str
    en: str
    source: Source | None = None  # the document and clause the rule comes from


@dataclass(frozen=True)
class Decision:
    policy: str
    on: date
    visit_type: str
    rules: tuple[RuleResult, ...] = field(default_factory=tuple)

    @property
    def allowed(self) -> bool:
        return all(r.passed for r in self.rules)

    @property
    def failed(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.rules if not r.passed)

    @property
    def first_failure(self) -> RuleResult | None:
        return self.failed[0] if self.failed else None

    def to_dict(self) -> dict[str, Any]:
        """The event form: every rule applied, so an auditor sees why, not just the verdict."""
        return {
            "policy": self.policy, "on": self.on.isoformat(), "visit_type": self.visit_type,
            "allowed": self.allowed, "failed": [r.rule for r in self.failed],
            "rules": [asdict(r) for r in self.rules],
        }


Rule = Callable[[Policy, Facts], RuleResult]


def _r(rule: str, ok: bool, zh: str, en: str) -> RuleResult:
    return RuleResult(rule, ok, zh, en)


def _since(start: date | None, years: int, on: date) -> tuple[bool, str]:
    if start is None:
        return False, "none on record"
    due = years_after(start, years)
    return on >= due, f"since {start.isoformat()}, {years} years complete on {due.isoformat()}"


# -- rules for every visit ---------------------------------------------------------------------

def doctor_licensed(p: Policy, f: Facts) -> RuleResult:
    ok = not p.licensed or bool(f.doctor.licence_no and f.doctor.licence_no.strip())
    return _r("doctor_licensed", ok,
              "医生持有执业证书" if ok else "医生没有登记的执业证书",
              "the doctor holds a practising licence" if ok
              else "the doctor has no practising licence on record")


def doctor_clinical_practice(p: Policy, f: Facts) -> RuleResult:
    n = p.min_clinical_years
    ok, detail = _since(f.doctor.clinical_practice_since, n, f.on)
    return _r("doctor_clinical_practice", ok,
              f"医生独立临床执业满{n}年" if ok else f"医生独立临床执业不满{n}年（{detail}）",
              f"the doctor has ≥{n} years of independent clinical practice ({detail})" if ok
              else f"the doctor has less than {n} years of independent clinical practice "
                   f"({detail})")


def doctor_registered_at_hospital(p: Policy, f: Facts) -> RuleResult:
    ok = not p.registered_at_hospital or f.doctor.hospital_id == f.hospital_id
    return _r("doctor_registered_at_hospital", ok,
              "医生在本院注册执业" if ok else "医生未在本院注册执业",
              "the doctor is registered at this hospital" if ok
              else "the doctor is not registered at this hospital")


def doctor_whitelisted(p: Policy, f: Facts) -> RuleResult:
    status = f.doctor.whitelist_status
    ok = not p.whitelist_active or status == "active"
    return _r("doctor_whitelisted", ok,
              "医生在互联网诊疗白名单内" if ok else f"医生不在有效白名单内（{status}）",
              "the doctor is on the active whitelist" if ok
              else f"the doctor is not on the active whitelist ({status})")


# -- first visits: the pilot -------------------------------------------------------------------

def pilot_window(p: Policy, f: Facts) -> RuleResult:
    ok = p.window_from <= f.on <= p.window_to
    span = f"{p.window_from.isoformat()}..{p.window_to.isoformat()}"
    return _r("pilot_window", ok,
              f"就诊日期 {f.on.isoformat()} 在试点期内（{span}）" if ok
              else f"就诊日期 {f.on.isoformat()} 不在线上首诊试点期内（{span}）",
              f"the date {f.on.isoformat()} is within the pilot ({span})" if ok
              else f"the date {f.on.isoformat()} is outside the first-visit pilot ({span})")


def pilot_hospital(p: Policy, f: Facts) -> RuleResult:
    ok = f.hospital_id in p.hospital_ids
    return _r("pilot_hospital", ok,
              "医院为线上首诊试点医院" if ok else "该医院不是线上首诊试点医院",
              "the hospital is a first-visit pilot hospital" if ok
              else "the hospital is not a first-visit pilot hospital")


def pilot_specialty(p: Policy, f: Facts) -> RuleResult:
    ok = f.specialty in p.specialties
    allowed = "、".join(p.specialties)
    return _r("pilot_specialty", ok,
              f"专科“{f.specialty}”为试点专科" if ok
              else f"专科“{f.specialty}”不在试点专科内（{allowed}）",
              f"the specialty {f.specialty} is a pilot specialty" if ok
              else f"the specialty {f.specialty} is not a pilot specialty ({allowed})")


def doctor_title(p: Policy, f: Facts) -> RuleResult:
    ok = p.title_ok(f.doctor.title)
    need = TITLE_NAMES.get(p.min_title, p.min_title)
    have = TITLE_NAMES.get(f.doctor.title, f.doctor.title)
    return _r("doctor_title", ok,
              f"医生职称（{have}）符合要求" if ok else f"线上首诊需{need}及以上职称，医生为{have}",
              f"the doctor's title ({f.doctor.title}) qualifies" if ok
              else f"first visits need {p.min_title} or above; the doctor is {f.doctor.title}")


def doctor_online_practice(p: Policy, f: Facts) -> RuleResult:
    n = p.min_online_years
    ok, detail = _since(f.doctor.online_practice_since, n, f.on)
    return _r("doctor_online_practice", ok,
              f"医生互联网复诊执业满{n}年" if ok else f"医生互联网复诊执业不满{n}年（{detail}）",
              f"the doctor has ≥{n} year(s) of online follow-up practice ({detail})" if ok
              else f"the doctor has less than {n} year(s) of online follow-up practice "
                   f"({detail})")


def doctor_training(p: Policy, f: Facts) -> RuleResult:
    passed = f.doctor.training_passed_on
    ok = not p.training_passed or (passed is not None and passed <= f.on)
    return _r("doctor_training", ok,
              "医生已通过试点培训" if ok else "医生未通过线上首诊试点培训",
              "the doctor passed the pilot training" if ok
              else "the doctor has not passed the first-visit pilot training")


# -- follow-ups ----------------------------------------------------------------------------------

def prior_diagnosis(p: Policy, f: Facts) -> RuleResult:
    d = f.prior_diagnosis
    if not p.follow_up_needs_prior_diagnosis:
        return _r("prior_diagnosis", True, "无需既往诊断", "no prior diagnosis needed")
    if d is None:
        return _r("prior_diagnosis", False, "复诊需要实体医院的既往诊断记录",
                  "a follow-up needs a prior diagnosis from a physical hospital on file")
    if not d.patient_matches:
        return _r("prior_diagnosis", False, "既往诊断记录不属于该患者",
                  "the prior diagnosis is not this patient's")
    if not d.institution_is_physical:
        return _r("prior_diagnosis", False, f"既往诊断机构“{d.institution}”不是实体医院",
                  f"the prior diagnosis is not from a physical hospital ({d.institution})")
    if d.diagnosed_on > f.on:
        return _r("prior_diagnosis", False, "既往诊断日期晚于就诊日期",
                  "the prior diagnosis is dated after the consultation")
    return _r("prior_diagnosis", True,
              f"有{d.institution}的既往诊断（{d.diagnosis}，{d.diagnosed_on.isoformat()}）",
              f"prior diagnosis on file from {d.institution} ({d.diagnosed_on.isoformat()}, "
              f"document {d.document_ref})")


COMMON: tuple[Rule, ...] = (doctor_licensed, doctor_clinical_practice,
                            doctor_registered_at_hospital, doctor_whitelisted)
FIRST_VISIT: tuple[Rule, ...] = (pilot_window, pilot_hospital, pilot_specialty, doctor_title,
                                 doctor_online_practice, doctor_training)
FOLLOW_UP: tuple[Rule, ...] = (prior_diagnosis,)


def evaluate(policy: Policy, facts: Facts) -> Decision:
    """Apply every rule for the visit type (all of them, not just up to the first failure)."""
    if facts.visit_type == "first":
        rules = COMMON + FIRST_VISIT
    elif facts.visit_type == "follow_up":
        rules = COMMON + FOLLOW_UP
    else:
        raise ValueError(f"unknown visit type {facts.visit_type!r}")
    return Decision(policy.id, facts.on, facts.visit_type,
                    tuple(_cited(policy, rule(policy, facts)) for rule in rules))


def _cited(policy: Policy, result: RuleResult) -> RuleResult:
    """The result with the rule's source, so a decision names where each rule comes from."""
    return replace(result, source=policy.sources[result.rule])
