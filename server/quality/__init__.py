"""Questions, complaints and adverse events (issue 15; letter 国卫办医政函〔2025〕482号, clause 五:
制定负性事件处置预案，畅通咨询和投诉渠道).

A guardian asks or complains on their consultation's link; a doctor or quality staff file an
adverse event. Each gets a reference number, each step is an event on the consultation's chain
(`feedback.*`, `adverse_event.*`), and quality staff (or admin) answer, handle and close them.
Least data: the free text stays in the tables (core/store/quality.py); the events carry the
reference, kind, category or severity, who (by role; the actor names them) and the text's
SHA-256, which ties the stored text to the tamper-evident chain without copying it there.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from core.store import Consultation

# At most this many questions and complaints, or adverse events, per consultation: enough for any
# real case, and a script filing in a loop cannot fill the tables or the chain.
MAX_PER_CONSULTATION = 20


class Refused(Exception):
    """A request the current records do not allow, with its HTTP status, code and both texts."""

    def __init__(self, status: int, code: str, message: str, zh: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.zh = status, code, message, zh


def digest(text: str) -> str:
    """The SHA-256 of a text as stored: what its event carries instead of the text."""
    return hashlib.sha256(text.encode()).hexdigest()


# The capacity a token's role acts in: the doctor with their day token is the doctor, the
# guardian with their feedback token the guardian (the actor still names the credential).
CAPACITY = {"doctor_day": "doctor", "guardian_feedback": "guardian"}


def role_of(actor: str) -> str:
    """`quality:alice` -> `quality`, `doctor_day:d_1` -> `doctor`: what others are shown of who
    wrote, and an event's `by`."""
    role = actor.split(":", 1)[0]
    return CAPACITY.get(role, role)


async def hold(session: AsyncSession, cid: str) -> None:
    """Begin a change to a consultation's records with a write that locks its row.

    Every change here goes with an event on the consultation's chain, which locks the same row
    anyway; taking it first puts the read that follows (is it closed? is this number free?)
    after every other writer of that consultation has committed (PostgreSQL: the row lock;
    SQLite: the database's write lock). Without it a reply and a close at the same instant
    could both see the item open, and the reply land after the close.
    """
    await session.execute(update(Consultation).where(Consultation.id == cid)
                          .values(event_seq=Consultation.event_seq)
                          .execution_options(synchronize_session=False))
