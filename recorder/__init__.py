"""Recording of encoded media into encrypted WebM segments, retention and replay (issue 5)."""

from recorder.service import Recorder, VerifyReport

__all__ = ["Recorder", "VerifyReport"]
