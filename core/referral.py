"""Termination with referral: end a consultation at once and tell the patient where to go.

One path for every cause: the doctor's `terminate` message and automatic triggers (guardian
absent too long, doctor identity lost) all call `terminate`, so each leaves the same trace: a row
in `referrals` and the `terminated` state event carrying the reason and the referral. The room
listens to the lifecycle and stops media the moment the state is final.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from core.lifecycle import Lifecycle, State, Transition, TransitionError, check_transition
from core.store import Database, records
from core.store.clinical import TERMINATION_REASONS, URGENCIES, Referral


class Clinic(Protocol):
    """What ending a consultation with a referral needs of the node (NodeContext has it)."""

    db: Database
    lifecycle: Lifecycle

MAX_TEXT = 500
MAX_NOTE = 1000


@dataclass(frozen=True)
class ReferralTarget:
    hospital: str
    department: str
    urgency: str  # routine | urgent | emergency (go now)
    note: str = ""

    def check(self) -> None:
        """Refuse an incomplete referral: a patient must know where to go and how soon."""
        if not self.hospital.strip():
            raise ValueError("referral.hospital is required")
        if not self.department.strip():
            raise ValueError("referral.department is required")
        if self.urgency not in URGENCIES:
            raise ValueError(f"referral.urgency must be one of {', '.join(URGENCIES)}")
        if len(self.hospital) > 200 or len(self.department) > 100 or len(self.note) > MAX_NOTE:
            raise ValueError("referral field too long")


def check_reason(reason: str, text: str | None) -> None:
    if reason not in TERMINATION_REASONS:
        raise ValueError(f"reason must be one of {', '.join(TERMINATION_REASONS)}")
    if reason == "other" and not (text and text.strip()):
        raise ValueError("text is required when the reason is 'other'")
    if text is not None and len(text) > MAX_TEXT:
        raise ValueError(f"text is longer than {MAX_TEXT} characters")


async def terminate(ctx: Clinic, cid: str, actor: str, reason: str,
                    referral: ReferralTarget, text: str | None = None) -> Transition:
    """End `cid` as `terminated` with `reason` and `referral`; media stops at once.

    Raises ValueError for an incomplete request and TransitionError when the consultation cannot
    be terminated (not started, already over, or another termination won the race); in both
    cases nothing is changed.
    """
    check_reason(reason, text)
    referral.check()
    current = await ctx.lifecycle.state(cid)
    check_transition(current, State.TERMINATED)
    row = Referral(consultation_id=cid, reason=reason, reason_text=text,
                   hospital=referral.hospital.strip(), department=referral.department.strip(),
                   urgency=referral.urgency, note=referral.note.strip(), actor=actor)
    try:
        async with ctx.db.session() as session, session.begin():
            session.add(row)
    except IntegrityError:
        raise TransitionError("the consultation has already been terminated", current) from None
    summary = reason if reason != "other" else f"other: {text}"
    try:
        return await ctx.lifecycle.transition(
            cid, State.TERMINATED, actor, summary,
            {"termination": {"reason": reason, "text": text},
             "referral": asdict(referral) | {"id": row.id}},
            expected=current)
    except TransitionError:
        async with ctx.db.session() as session, session.begin():
            await session.execute(delete(Referral).where(Referral.id == row.id))
        raise


async def refer_to_own_hospital(ctx: Clinic, cid: str, reason: str,
                                note: str) -> Transition | None:
    """An automatic trigger: terminate and send the patient to the booking hospital's
    department for a routine visit (the doctor is not there to choose); None when the
    consultation is already over or another termination won."""
    consultation = await records.get_consultation(ctx.db, cid)
    hospital = (await records.get_hospital(ctx.db, consultation.hospital_id)
                if consultation is not None else None)
    if consultation is None or hospital is None:
        return None
    target = ReferralTarget(hospital.name, consultation.specialty, "routine", note)
    try:
        return await terminate(ctx, cid, "system", reason, target)
    except TransitionError:
        return None


async def get_referral(db: Database, cid: str) -> Referral | None:
    async with db.session() as session:
        return await session.scalar(select(Referral).where(Referral.consultation_id == cid))


def referral_json(row: Referral) -> dict[str, Any]:
    return {
        "id": row.id, "reason": row.reason, "text": row.reason_text,
        "referral": {"hospital": row.hospital, "department": row.department,
                     "urgency": row.urgency, "note": row.note},
        "by": row.actor.split(":", 1)[0], "at": row.created_at.isoformat(),
    }
