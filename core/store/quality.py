"""Questions, complaints and adverse events (pilot letter 482, clause 五: 制定负性事件处置预案，
畅通咨询和投诉渠道), on the shared declarative Base.

The free text people write lives here, in rows that only the people handling them read; the
consultation's event chain carries reference numbers, kinds, categories, severities and the
SHA-256 of each text instead (least data in the audit log, and a stored text edited later no
longer matches its event).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UTCDateTime, new_id, utcnow

MAX_TEXT = 2000
FEEDBACK_KINDS = ("question", "complaint")
FEEDBACK_CATEGORIES = ("service", "waiting", "technical", "medical", "privacy", "fees", "other")
FEEDBACK_STATUSES = ("open", "replied", "closed")
SEVERITIES = ("mild", "moderate", "severe")
ADVERSE_STATUSES = ("open", "handling", "closed")
# What was done about an adverse event; the details go into the action's note.
ADVERSE_ACTIONS = ("clinical_review", "contacted_family", "referred_in_person",
                   "reported_to_authority", "technical_fix", "other")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Feedback(Base):
    """A guardian's question or complaint about one consultation, with a reference number."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("ref"),
        CheckConstraint(_one_of("kind", FEEDBACK_KINDS), name="kind"),
        CheckConstraint(f"category IS NULL OR {_one_of('category', FEEDBACK_CATEGORIES)}",
                        name="category"),
        CheckConstraint(_one_of("status", FEEDBACK_STATUSES), name="status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("fb"))
    ref: Mapped[str] = mapped_column(String(24))
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    category: Mapped[str | None] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(String(MAX_TEXT))
    status: Mapped[str] = mapped_column(String(20), default="open", server_default="open")
    opened_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_by: Mapped[str | None] = mapped_column(String(200))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FeedbackReply(Base):
    """Staff's answer to a question or complaint, shown to the guardian on their link."""

    __tablename__ = "feedback_replies"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("fr"))
    feedback_id: Mapped[str] = mapped_column(ForeignKey("feedback.id"), index=True)
    author: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(String(MAX_TEXT))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AdverseEvent(Base):
    """An adverse event (负性事件) in or after a consultation, filed by its doctor or by staff."""

    __tablename__ = "adverse_events"
    __table_args__ = (
        UniqueConstraint("ref"),
        CheckConstraint(_one_of("severity", SEVERITIES), name="severity"),
        CheckConstraint(_one_of("status", ADVERSE_STATUSES), name="status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ae"))
    ref: Mapped[str] = mapped_column(String(24))
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id"), index=True)
    severity: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(String(MAX_TEXT))
    status: Mapped[str] = mapped_column(String(20), default="open", server_default="open")
    filed_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_by: Mapped[str | None] = mapped_column(String(200))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AdverseEventAction(Base):
    """One step of an adverse event's handling record: who did what, when."""

    __tablename__ = "adverse_event_actions"
    __table_args__ = (CheckConstraint(_one_of("action", ADVERSE_ACTIONS), name="action"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("aa"))
    adverse_event_id: Mapped[str] = mapped_column(ForeignKey("adverse_events.id"), index=True)
    action: Mapped[str] = mapped_column(String(30))
    note: Mapped[str] = mapped_column(String(MAX_TEXT))
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
