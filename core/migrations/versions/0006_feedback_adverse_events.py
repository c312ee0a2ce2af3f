"""Questions, complaints and adverse events (issue 15); the second pilot hospital's new name.

The free text is kept in these tables; the events carry ids, kinds, categories and severities.
A hospital row seeded under the second pilot hospital's former name takes the name letter
国卫办医政函〔2025〕482号 uses (ids do not change: bookings refer to them).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("question", "complaint")
CATEGORIES = ("service", "waiting", "technical", "medical", "privacy", "fees", "other")
FEEDBACK_STATUSES = ("open", "replied", "closed")
SEVERITIES = ("mild", "moderate", "severe")
ADVERSE_STATUSES = ("open", "handling", "closed")
ACTIONS = ("clinical_review", "contacted_family", "referred_in_person", "reported_to_authority",
           "technical_fix", "other")
HOSPITAL_ID = "h_bj_cih"
FORMER_NAME = "首都儿科研究所附属儿童医院 Children's Hospital, Capital Institute of Pediatrics"
LETTER_NAME = "首都医科大学附属首都儿童医学中心 Capital Center for Children's Health"


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _rename(old: str, new: str) -> None:
    op.execute(sa.text("UPDATE hospitals SET name = :new WHERE id = :id AND name = :old")
               .bindparams(id=HOSPITAL_ID, old=old, new=new))


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("ref", sa.String(24), nullable=False),
        sa.Column("consultation_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("category", sa.String(20), nullable=True),
        sa.Column("text", sa.String(2000), nullable=False),
        sa.Column("status", sa.String(20), server_default="open", nullable=False),
        sa.Column("opened_by", sa.String(200), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("closed_by", sa.String(200), nullable=True),
        sa.Column("closed_at", _tz(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"],
                                name="fk_feedback_consultation_id_consultations"),
        sa.UniqueConstraint("ref", name="uq_feedback_ref"),
        sa.CheckConstraint(_one_of("kind", KINDS), name="ck_feedback_kind"),
        sa.CheckConstraint(f"category IS NULL OR {_one_of('category', CATEGORIES)}",
                           name="ck_feedback_category"),
        sa.CheckConstraint(_one_of("status", FEEDBACK_STATUSES), name="ck_feedback_status"),
    )
    op.create_index("ix_feedback_consultation_id", "feedback", ["consultation_id"])
    op.create_table(
        "feedback_replies",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("feedback_id", sa.String(40), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("text", sa.String(2000), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback_replies"),
        sa.ForeignKeyConstraint(["feedback_id"], ["feedback.id"],
                                name="fk_feedback_replies_feedback_id_feedback"),
    )
    op.create_index("ix_feedback_replies_feedback_id", "feedback_replies", ["feedback_id"])
    op.create_table(
        "adverse_events",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("ref", sa.String(24), nullable=False),
        sa.Column("consultation_id", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("status", sa.String(20), server_default="open", nullable=False),
        sa.Column("filed_by", sa.String(200), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.Column("closed_by", sa.String(200), nullable=True),
        sa.Column("closed_at", _tz(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_adverse_events"),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"],
                                name="fk_adverse_events_consultation_id_consultations"),
        sa.UniqueConstraint("ref", name="uq_adverse_events_ref"),
        sa.CheckConstraint(_one_of("severity", SEVERITIES), name="ck_adverse_events_severity"),
        sa.CheckConstraint(_one_of("status", ADVERSE_STATUSES), name="ck_adverse_events_status"),
    )
    op.create_index("ix_adverse_events_consultation_id", "adverse_events", ["consultation_id"])
    op.create_table(
        "adverse_event_actions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("adverse_event_id", sa.String(40), nullable=False),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("note", sa.String(2000), nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("created_at", _tz(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_adverse_event_actions"),
        sa.ForeignKeyConstraint(["adverse_event_id"], ["adverse_events.id"],
                                name="fk_adverse_event_actions_adverse_event_id_adverse_events"),
        sa.CheckConstraint(_one_of("action", ACTIONS), name="ck_adverse_event_actions_action"),
    )
    op.create_index("ix_adverse_event_actions_adverse_event_id", "adverse_event_actions",
                    ["adverse_event_id"])
    _rename(FORMER_NAME, LETTER_NAME)


def downgrade() -> None:
    _rename(LETTER_NAME, FORMER_NAME)
    op.drop_table("adverse_event_actions")
    op.drop_table("adverse_events")
    op.drop_table("feedback_replies")
    op.drop_table("feedback")
