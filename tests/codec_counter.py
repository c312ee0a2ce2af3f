"""Count every codec use during a test: relay and recording must neither decode nor encode."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import pytest
from aiortc.codecs import opus, vpx


@dataclass
class CodecUse:
    calls: list[str] = field(default_factory=list)  # aiortc encode/decode calls
    opened: list[str] = field(default_factory=list)  # PyAV codec contexts created

    @property
    def video_contexts(self) -> list[str]:
        """aiortc's sender builds an idle Opus encoder object even when it only packetizes."""
        return [c for c in self.opened if not c.startswith("libopus")]


def count_codecs(monkeypatch: pytest.MonkeyPatch) -> CodecUse:
    use = CodecUse()
    for cls in (vpx.Vp8Encoder, vpx.Vp8Decoder, opus.OpusEncoder, opus.OpusDecoder):
        for name in ("encode", "decode"):
            if hasattr(cls, name):
                monkeypatch.setattr(cls, name, _counting(use.calls, f"{cls.__name__}.{name}",
                                                         getattr(cls, name)))
    real_create = av.CodecContext.create

    def counting_create(codec, mode=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        use.opened.append(f"{codec}:{mode}")
        return real_create(codec, mode, *args, **kwargs)

    monkeypatch.setattr(av.CodecContext, "create", staticmethod(counting_create))
    return use


def _counting(calls: list[str], label: str, real: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(label)
        return real(*args, **kwargs)

    return wrapper
