"""What the identity service's children need of it, as narrow interfaces: enrollment,
verification and the re-checks are given their host (the service) typed as one of these, so
they depend on what they use and never import the service that builds them (service.py imports
them; nothing here imports service.py)."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from core.config.identity import IdentityConfig
from core.store import Database, EventLog
from core.store.faces import FaceEnrollment

from .pool import FacePool
from .storage import ProtectedStore


class FaceDesk(Protocol):
    """Enrolling a reference photo: the face workers, protected storage, the audit trail."""

    @property
    def config(self) -> IdentityConfig: ...

    @property
    def pool(self) -> FacePool: ...

    @property
    def store(self) -> ProtectedStore: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def db(self) -> Database: ...


class CheckHost(FaceDesk, Protocol):
    """Checking the doctor (verifier.py, assurance.py): the desk, plus where outcomes go."""

    async def enrollment(self, doctor_id: str) -> FaceEnrollment | None:
        """The doctor's enrolled face, None when there is none."""

    async def status(self, cid: str, status: str) -> None:
        """The doctor's identity status for the ops view."""

    async def alert(self, cid: str, kind: str, text: str, data: dict[str, Any]) -> None:
        """An ops alert."""

    async def end(self, cid: str, reason: str, note: str) -> None:
        """Terminate the consultation with a referral to the booking hospital."""


# The node's face desk (the identity service), for the guardian's photo upload.
FACES_KEY = web.AppKey("faces", FaceDesk)
