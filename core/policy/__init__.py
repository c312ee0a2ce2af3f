"""Eligibility policy: which consultations may happen online, as data plus a small evaluator.

The rules change by letter from the city (a new pilot, a new window), so they live in a policy
file (`beijing_pilot_2026.json`) and the code only knows how to apply each kind of rule.
`load_policy` reads the file, `evaluate` applies it to plain facts and returns a `Decision`
that lists every rule applied, so a refusal always names the rule and says why in zh and en.
"""

from core.policy.dates import consultation_date, years_after
from core.policy.engine import Decision, Facts, RuleResult, evaluate
from core.policy.load import DEFAULT_POLICY, Policy, load_policy

__all__ = [
    "DEFAULT_POLICY",
    "Decision",
    "Facts",
    "Policy",
    "RuleResult",
    "consultation_date",
    "evaluate",
    "load_policy",
    "years_after",
]
