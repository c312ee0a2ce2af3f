"""Recording of encoded media into encrypted WebM segments, retention and replay (issue 5).

`Recorder` and `VerifyReport` are loaded on first use, so that core/config/ can import
core.config.recording_store without importing the recorder (which imports the server's modules).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recorder.integrity import VerifyReport
    from recorder.service import Recorder

__all__ = ["Recorder", "VerifyReport"]


def __getattr__(name: str) -> Any:
    if name == "Recorder":
        from recorder.service import Recorder

        return Recorder
    if name == "VerifyReport":
        from recorder.integrity import VerifyReport

        return VerifyReport
    raise AttributeError(f"module 'recorder' has no attribute {name!r}")
