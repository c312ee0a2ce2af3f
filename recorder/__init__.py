"""Recording of encoded media into encrypted WebM segments, retention and replay (issues 5, 12)."""

from __future__ import annotations

from recorder.integrity import VerifyReport
from recorder.service import Recorder

__all__ = ["Recorder", "VerifyReport"]
