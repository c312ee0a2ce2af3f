"""Labels (zh, en) of the progress report's measures, for the printed page: one per part of a
measure's key ("first.terminated_reason.guardian_absent": 初诊 · 终止原因：监护人不在场)."""

from __future__ import annotations

from typing import Any

from server.report import empty, flatten

SECTIONS: dict[str, tuple[str, str]] = {
    "first": ("初诊", "First visits"),
    "follow_up": ("复诊", "Follow-up visits"),
    "identity": ("医生身份核验", "Doctor identity checks"),
    "pediatric": ("儿童问诊与监护人在场", "Pediatric calls and the guardian on camera"),
    "recording": ("录音录像", "Recordings"),
    "questions": ("咨询", "Questions"),
    "complaints": ("投诉", "Complaints"),
    "adverse_events": ("负性事件", "Adverse events"),
}
PARTS: dict[str, tuple[str, str]] = {
    "booked": ("预约", "booked"), "held": ("已开展（进入问诊）", "held (went live)"),
    "ended": ("正常结束", "ended normally"), "terminated": ("终止", "terminated"),
    "aborted": ("中止", "aborted"), "referred": ("转诊", "referred"),
    "unfinished": ("未结束", "not finished"),
    "terminated_reason": ("终止原因", "terminated, reason"),
    "condition_changed": ("病情变化", "condition changed"),
    "needs_in_person": ("需线下就诊", "needs an in-person visit"),
    "first_visit_outside_pilot": ("初诊不在试点范围", "first visit outside the pilot"),
    "guardian_absent": ("监护人不在场", "guardian absent"),
    "technical_failure": ("技术故障", "technical failure"),
    "doctor_identity_lost": ("医生身份核验失败", "doctor's identity lost"),
    "other": ("其他", "other"),
    "checked": ("核验的问诊", "consultations checked"),
    "passed": ("核验通过的问诊", "consultations passed"),
    "attempts": ("核验次数", "attempts"), "attempts_failed": ("未通过次数", "attempts failed"),
    "locked": ("锁定的问诊", "consultations locked"),
    "monitored": ("监护人在场监测", "guardian monitored"),
    "with_absences": ("有监护人离开的问诊", "calls with guardian absences"),
    "absences": ("监护人离开次数", "guardian absences"),
    "absent_limit": ("离开超过时限", "absent past the limit"),
    "outcome": ("有离开的问诊结局", "calls with absences, outcome"),
    "recorded": ("已录制", "recorded"),
    "complete": ("完整录制至结束", "complete to the end"),
    "with_gaps": ("有中断", "with gaps"), "failed": ("录制故障", "failed"),
    "verified": ("完整性校验通过", "integrity verified"),
    "verification_failed": ("完整性校验未通过", "integrity check failed"),
    "opened": ("收到", "opened"), "replied": ("已答复", "replied"),
    "closed": ("已办结", "closed"), "open_at_end": ("期末未办结", "open at the period's end"),
    "filed": ("上报", "filed"), "mild": ("轻度", "mild"), "moderate": ("中度", "moderate"),
    "severe": ("重度", "severe"), "handled": ("已处置", "handled"),
}


def measures() -> list[dict[str, str]]:
    """Every measure's key, section and label, in order."""
    out = []
    for key, _ in flatten(empty()):
        section, *rest = key.split(".")
        if section == "pediatric" and rest == ["booked"]:
            zh, en = "儿童问诊预约", "pediatric consultations booked"
        elif section == "pediatric" and rest == ["held"]:
            zh, en = "儿童问诊已开展", "pediatric calls held"
        else:
            zh = "：".join(PARTS[p][0] for p in rest)
            en = ": ".join(PARTS[p][1] for p in rest)
        out.append({"key": key, "section": section, "zh": zh, "en": en})
    return out


def sections() -> list[dict[str, str]]:
    return [{"key": key, "zh": zh, "en": en} for key, (zh, en) in SECTIONS.items()]


def labelled(report: dict[str, Any]) -> dict[str, Any]:
    """The report with its measures' and sections' labels, as the page reads them."""
    return {**report, "measures": measures(), "sections": sections()}
