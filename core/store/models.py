"""The durable records: ORM models shared by SQLite and PostgreSQL.

Every datetime is timezone-aware UTC on the way in and on the way out (SQLite has no time zone
type, so `UTCDateTime` stores UTC and re-attaches it on load). Naive datetimes are refused: a
wall-clock time without a zone is how audit timelines go wrong.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

GENESIS_HASH = "0" * 64
SYSTEM_CHAIN = "system"

TITLES = ("resident", "attending", "associate_chief", "chief")
WHITELIST_STATUSES = ("active", "suspended", "revoked")
VISIT_TYPES = ("first", "follow_up")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A short random id like `c_3fK9xQ2mVb7LpR1w`; the prefix tells a human what it names."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"


class UTCDateTime(TypeDecorator[datetime]):
    """DateTime(timezone=True) that always returns aware UTC datetimes, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    # Named constraints, so that migrations can refer to them on both backends.
    metadata = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


class Hospital(Base):
    __tablename__ = "hospitals"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("h"))
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    is_physical: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Doctor(Base):
    __tablename__ = "doctors"
    __table_args__ = (
        CheckConstraint(_one_of("title", TITLES), name="title"),
        CheckConstraint(_one_of("whitelist_status", WHITELIST_STATUSES), name="whitelist_status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("d"))
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    national_id_masked: Mapped[str] = mapped_column(String(32))
    licence_no: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(20))
    clinical_practice_since: Mapped[date | None] = mapped_column(Date)
    online_practice_since: Mapped[date | None] = mapped_column(Date)
    training_passed_on: Mapped[date | None] = mapped_column(Date)
    specialties: Mapped[list[str]] = mapped_column(JSON, default=list)
    whitelist_status: Mapped[str] = mapped_column(
        String(20), default="active", server_default="active")
    whitelist_reason: Mapped[str | None] = mapped_column(String(500))
    whitelist_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Patient(Base):
    __tablename__ = "patients"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("p"))
    name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date] = mapped_column(Date)
    national_id_masked: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Guardian(Base):
    __tablename__ = "guardians"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("g"))
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str] = mapped_column(String(40))
    national_id_masked: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Consultation(Base):
    __tablename__ = "consultations"
    __table_args__ = (CheckConstraint(_one_of("visit_type", VISIT_TYPES), name="visit_type"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("c"))
    hospital_id: Mapped[str] = mapped_column(ForeignKey("hospitals.id"))
    doctor_id: Mapped[str] = mapped_column(ForeignKey("doctors.id"), index=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    guardian_id: Mapped[str | None] = mapped_column(ForeignKey("guardians.id"))
    specialty: Mapped[str] = mapped_column(String(100))
    visit_type: Mapped[str] = mapped_column(String(20))
    scheduled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(
        String(20), default="scheduled", server_default="scheduled", index=True)
    node_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(500))
    # The head of this consultation's event chain, kept beside the row so that deleting the
    # last events of the chain is detectable (see events.EventLog.verify).
    event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    event_head: Mapped[str] = mapped_column(
        String(64), default=GENESIS_HASH, server_default=GENESIS_HASH)


class Event(Base):
    """One entry of the append-only audit log; `hash` covers its content and `prev_hash`."""

    __tablename__ = "events"
    __table_args__ = (
        # Also the index for reading a chain in order: both backends back it with one.
        UniqueConstraint("chain", "seq"),
        Index("ix_events_at", "at"),
    )

    # BIGINT on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
