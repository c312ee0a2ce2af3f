"""Informed consent (Tianjin rules §11): the versioned text, its acceptance, and the accept gate.

The text lives in `core/texts/consent-<version>.json` (zh + en); changing it means a new file
and a new version, so what a guardian agreed to can always be shown again exactly.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.lifecycle import Gate
from core.store import Database, EventLog
from core.store.clinical import Consent

TEXTS_DIR = Path(__file__).resolve().parent / "texts"
CURRENT_VERSION = "2026.1"


@lru_cache(maxsize=4)
def consent_text(version: str = CURRENT_VERSION) -> dict[str, Any]:
    """The consent text of one version, as shown on the call page."""
    path = TEXTS_DIR / f"consent-{version}.json"
    text = json.loads(path.read_text(encoding="utf-8"))
    if text.get("version") != version:
        raise ValueError(f"{path} says version {text.get('version')!r}, not {version!r}")
    return text


async def consent_given(db: Database, cid: str,
                        version: str = CURRENT_VERSION) -> Consent | None:
    async with db.session() as session:
        return await session.scalar(select(Consent).where(
            Consent.consultation_id == cid, Consent.version == version))


async def record_consent(db: Database, events: EventLog, cid: str, actor: str,
                         version: str) -> tuple[Consent, bool]:
    """Store the acceptance of `version` (the current one) once; returns (consent, new).

    A repeated acceptance (a page reloaded and rejoined) is not a second consent: it returns the
    first one and logs nothing new.
    """
    if version != CURRENT_VERSION:
        raise ValueError(f"consent version {version!r} is not the current one "
                         f"({CURRENT_VERSION}); reload the page to read the current text")
    existing = await consent_given(db, cid, version)
    if existing is not None:
        return existing, False
    row = Consent(consultation_id=cid, version=version, actor=actor)
    try:
        async with db.session() as session, session.begin():
            session.add(row)
    except IntegrityError:  # two sockets raced: the first one counts
        first = await consent_given(db, cid, version)
        if first is None:
            raise
        return first, False
    await events.append(cid, "consent.accepted", actor,
                        {"version": version, "at": row.accepted_at.isoformat()})
    return row, True


def consent_gate(db: Database) -> Gate:
    """The accept gate: no consultation goes active without consent to the current text."""

    async def gate(cid: str) -> str | None:
        if await consent_given(db, cid) is None:
            return (f"the guardian has not given informed consent (version {CURRENT_VERSION}) "
                    "/ 患者方尚未签署知情同意书")
        return None

    return gate
