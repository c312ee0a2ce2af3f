"""Reading a policy file into a typed, validated `Policy` (a bad file fails at start, loudly)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from core.store.models import TITLES

POLICY_DIR = Path(__file__).resolve().parent
DEFAULT_POLICY = POLICY_DIR / "beijing_pilot_2026.json"

# Every rule the engine applies (core/policy/engine.py); each must cite its source.
RULES = ("doctor_licensed", "doctor_clinical_practice", "doctor_registered_at_hospital",
         "doctor_whitelisted", "pilot_window", "pilot_hospital", "pilot_specialty",
         "doctor_title", "doctor_online_practice", "doctor_training", "prior_diagnosis")


@dataclass(frozen=True)
class Source:
    """Where a rule comes from, so an auditor can trace it: a document and its clause.

    A clause nobody has checked says so ("clause to be confirmed"); it is never guessed.
    """

    document: str
    clause: str
    about: str = ""


@dataclass(frozen=True)
class PilotHospital:
    id: str
    name: str
    city: str
    former_names: tuple[str, ...] = ()  # the names it had (old referrals, old documents)


@dataclass(frozen=True)
class Policy:
    id: str
    timezone: ZoneInfo
    window_from: date
    window_to: date  # inclusive
    hospitals: tuple[PilotHospital, ...]
    specialties: tuple[str, ...]
    licensed: bool
    min_clinical_years: int
    registered_at_hospital: bool
    whitelist_active: bool
    min_title: str
    min_online_years: int
    training_passed: bool
    follow_up_needs_prior_diagnosis: bool
    sources: Mapping[str, Source] = field(hash=False)  # by rule name (RULES)

    @property
    def hospital_ids(self) -> frozenset[str]:
        return frozenset(h.id for h in self.hospitals)

    def title_ok(self, title: str) -> bool:
        """Titles rank resident < attending < associate chief < chief (models.TITLES order)."""
        return title in TITLES and TITLES.index(title) >= TITLES.index(self.min_title)


class PolicyError(ValueError):
    """The policy file is missing something or holds a value of the wrong kind."""


def _get(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj or not isinstance(obj[key], kind) or (
            isinstance(obj[key], bool) and kind is int):
        raise PolicyError(f"{where}.{key} must be a {kind.__name__}")
    return obj[key]


def parse_policy(raw: dict[str, Any]) -> Policy:
    window = _get(raw, "window", dict, "policy")
    doctor = _get(raw, "doctor", dict, "policy")
    every = _get(doctor, "all_visits", dict, "doctor")
    first = _get(doctor, "first_visit", dict, "doctor")
    follow = _get(raw, "follow_up", dict, "policy")
    try:
        start = date.fromisoformat(_get(window, "from", str, "window"))
        end = date.fromisoformat(_get(window, "to", str, "window"))
        tz = ZoneInfo(_get(raw, "timezone", str, "policy"))
    except (ValueError, KeyError) as exc:
        raise PolicyError(f"bad window or timezone: {exc}") from exc
    if end < start:
        raise PolicyError("window.to is before window.from")
    min_title = _get(first, "min_title", str, "first_visit")
    if min_title not in TITLES:
        raise PolicyError(f"first_visit.min_title must be one of {', '.join(TITLES)}")
    hospitals = tuple(
        PilotHospital(_get(h, "id", str, "hospital"), _get(h, "name", str, "hospital"),
                      str(h.get("city", "")), _names(h.get("former_names", [])))
        for h in _get(raw, "hospitals", list, "policy"))
    return Policy(
        id=_get(raw, "id", str, "policy"), timezone=tz, window_from=start, window_to=end,
        hospitals=hospitals,
        specialties=tuple(str(s) for s in _get(raw, "specialties", list, "policy")),
        licensed=_get(every, "licensed", bool, "all_visits"),
        min_clinical_years=_get(every, "min_clinical_practice_years", int, "all_visits"),
        registered_at_hospital=_get(every, "registered_at_hospital", bool, "all_visits"),
        whitelist_active=_get(every, "whitelist_active", bool, "all_visits"),
        min_title=min_title,
        min_online_years=_get(first, "min_online_practice_years", int, "first_visit"),
        training_passed=_get(first, "training_passed", bool, "first_visit"),
        follow_up_needs_prior_diagnosis=_get(
            follow, "prior_diagnosis_from_physical_hospital", bool, "follow_up"),
        sources=_sources(_get(raw, "sources", dict, "policy")),
    )


def _names(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) and n.strip() for n in raw):
        raise PolicyError("hospital.former_names must be a list of names")
    return tuple(raw)


def _sources(raw: dict[str, Any]) -> Mapping[str, Source]:
    """One source per rule the engine applies: none missing, none for a rule that is not."""
    missing = [rule for rule in RULES if rule not in raw]
    if missing:
        raise PolicyError(f"sources: no source for rule(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - set(RULES))
    if unknown:
        raise PolicyError(f"sources: no such rule {', '.join(unknown)}")
    sources = {}
    for rule in RULES:
        entry = _get(raw, rule, dict, "sources")
        document = _get(entry, "document", str, f"sources.{rule}").strip()
        clause = _get(entry, "clause", str, f"sources.{rule}").strip()
        if not document or not clause:
            raise PolicyError(f"sources.{rule}: document and clause must not be empty (write "
                              f"'clause to be confirmed' rather than leave it out)")
        sources[rule] = Source(document, clause, str(entry.get("about", "")))
    return MappingProxyType(sources)


@lru_cache(maxsize=8)
def load_policy(path: Path = DEFAULT_POLICY) -> Policy:
    """Read and validate a policy file (cached: the file is part of the release)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: a policy is a JSON object")
    return parse_policy(raw)
