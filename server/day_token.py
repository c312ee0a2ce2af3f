"""A doctor's day token: the worklist for some hours, and from it only the doctor's own calls.

Issued by admin (`POST /api/admin/doctors/{doctor_id}/day-token`) or from the command line
(`python -m server day-link DOCTOR_ID`), only for a doctor active in the registry. What the
token can open is decided by the routes that list the `doctor_day` role (server/worklist_api.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from core.auth import Role, Tokens
from core.store import SYSTEM_CHAIN, Database, EventLog, records

MAX_HOURS = 16  # one working day at most


class DayTokenRefused(Exception):
    """No day token for this doctor: `code` is no_doctor or doctor_not_active."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DayLink:
    token: str
    expires_at: datetime
    link: str


async def issue_day_link(db: Database, events: EventLog, tokens: Tokens, public_url: str,
                         doctor_id: str, hours: int, actor: str) -> DayLink:
    """A doctor's day token and worklist link, for a doctor active in the registry; an event
    names who issued it, for whom and until when (never the token)."""
    if not 1 <= hours <= MAX_HOURS:
        raise ValueError(f"hours must be 1..{MAX_HOURS}")
    doctor = await records.get_doctor(db, doctor_id)
    if doctor is None:
        raise DayTokenRefused("no_doctor", "no such doctor")
    if doctor.whitelist_status != "active":
        raise DayTokenRefused("doctor_not_active",
                              f"the doctor is {doctor.whitelist_status} in the registry")
    token = tokens.issue(Role.DOCTOR_DAY, doctor_id, ttl_s=hours * 3600)
    expires = datetime.fromtimestamp(tokens.verify(token).expires_at, UTC)
    await events.append(SYSTEM_CHAIN, "worklist.day_token", actor, {
        "doctor": doctor_id, "hours": hours, "expires_at": expires.isoformat()})
    return DayLink(token, expires, f"{public_url}/worklist#token={token}")
