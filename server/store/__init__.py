"""The durable store: SQL records, schema migrations and the hash-chained audit log."""

from server.store import models
from server.store.db import Database
from server.store.events import ChainReport, EventLog, canonical_json, event_hash
from server.store.models import (
    GENESIS_HASH,
    SYSTEM_CHAIN,
    Base,
    Consultation,
    Doctor,
    Event,
    Guardian,
    Hospital,
    Patient,
    new_id,
    utcnow,
)
from server.store.records import (
    create_consultation,
    create_doctor,
    create_guardian,
    create_hospital,
    create_patient,
    get_consultation,
    get_doctor,
    get_guardian,
    get_hospital,
    get_patient,
    list_consultations,
    set_consultation_state,
)

__all__ = [
    "GENESIS_HASH",
    "SYSTEM_CHAIN",
    "Base",
    "ChainReport",
    "Consultation",
    "Database",
    "Doctor",
    "Event",
    "EventLog",
    "Guardian",
    "Hospital",
    "Patient",
    "canonical_json",
    "create_consultation",
    "create_doctor",
    "create_guardian",
    "create_hospital",
    "create_patient",
    "event_hash",
    "get_consultation",
    "get_doctor",
    "get_guardian",
    "get_hospital",
    "get_patient",
    "list_consultations",
    "models",
    "new_id",
    "set_consultation_state",
    "utcnow",
]
