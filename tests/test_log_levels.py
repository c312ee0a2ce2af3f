"""TC_LOG_LEVEL with per-logger levels: one part of the node traced without the rest."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import logs
from core.config import load_settings


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root, traced = logging.getLogger(), logging.getLogger("signaling.bandwidth")
    saved = root.handlers[:], root.level, traced.level
    yield
    root.handlers[:], _, _ = saved
    root.setLevel(saved[1])
    traced.setLevel(saved[2])


def test_a_named_logger_gets_its_own_level(restored_logging: None) -> None:
    logs.configure("warning,signaling.bandwidth=debug", "node-a", json_lines=False)
    assert logging.getLogger().level == logging.WARNING
    assert logging.getLogger("signaling.bandwidth").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("aiortc.rtcrtpsender").isEnabledFor(logging.DEBUG)


@pytest.mark.parametrize("raw", ["LOUD", "WARNING,signaling=NOPE", "WARNING,=DEBUG"])
def test_a_bad_level_is_refused_before_the_node_starts(
        raw: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TC_LOG_LEVEL", raw)
    with pytest.raises(ValueError, match="TC_LOG_LEVEL"):
        load_settings(data_dir=tmp_path, token_secret="x" * 48)
