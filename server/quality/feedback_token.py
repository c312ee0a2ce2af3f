"""The guardian's feedback token: the hospital's answers, readable days after the call.

The join link's token lives `TC_TOKEN_TTL` (4 h), and an answer to a complaint may come days
later. So when a guardian files a question or complaint with the call token, the answer carries a
`guardian_feedback` token for the same consultation and guardian, which the call page keeps (in
its URL fragment, and in the browser's storage under the consultation, so that the same join link
opened again finds it). That role opens only `GET` and `POST /api/consultations/{cid}/feedback`
of its own consultation: no call (the WebSocket takes only doctor and guardian tokens), no
consent, referral, queue or anything of another consultation.

It expires `TC_FEEDBACK_DAYS` (30) after the consultation: after its end, or after its slot when
it never ended, whenever it is minted, so filing again cannot stretch it. Minting it is a
`feedback_token.issued` event on the consultation's chain (never the token itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.auth import Role, Tokens
from core.store import Consultation, EventLog

ISSUED = "feedback_token.issued"


@dataclass(frozen=True)
class FeedbackToken:
    token: str
    expires_at: datetime


def expiry(consultation: Consultation, days: int) -> datetime:
    """`days` after the consultation: its end, or its slot if it has not ended (or ended early)."""
    anchor = max(consultation.scheduled_at, consultation.ended_at or consultation.scheduled_at)
    return anchor + timedelta(days=days)


async def issue(tokens: Tokens, events: EventLog, consultation: Consultation, guardian: str,
                actor: str, days: int) -> FeedbackToken | None:
    """A feedback token for `guardian` on this consultation; None once the period is over."""
    until = expiry(consultation, days)
    ttl = int(until.timestamp()) - tokens.now()
    if ttl <= 0:
        return None
    token = tokens.issue(Role.GUARDIAN_FEEDBACK, guardian, consultation.id, ttl_s=ttl)
    expires = datetime.fromtimestamp(tokens.verify(token).expires_at, UTC)
    await events.append(consultation.id, ISSUED, actor, {"expires_at": expires.isoformat()})
    return FeedbackToken(token, expires)
