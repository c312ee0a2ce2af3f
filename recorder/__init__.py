"""Recording of encoded media into encrypted WebM segments, retention and replay (issue 5)."""

from recorder.integrity import VerifyReport
from recorder.service import Recorder

__all__ = ["Recorder", "VerifyReport"]
