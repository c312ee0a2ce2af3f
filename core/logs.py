"""Structured JSON logs, one object per line, with the consultation id on every line.

The consultation id travels in a context variable: the WebSocket handler sets it, and every task
it spawns inherits it, so a log line from deep in the media code still says which consultation.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

consultation_var: ContextVar[str | None] = ContextVar("consultation_id", default=None)


class JsonFormatter(logging.Formatter):
    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "node": self.node_id,
            "consultation": getattr(record, "consultation", None) or consultation_var.get(),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, node_id: str, json_lines: bool = True) -> None:
    """Log to stderr, one JSON object a line; `warnings` go through logging too (py.warnings),
    or a library's warning would be a plain-text line in the middle of the JSON.

    `level`: the root's level, then any `logger=LEVEL` after commas, so one part can be traced
    without the rest (aiortc at DEBUG logs every packet): "WARNING,signaling.bandwidth=DEBUG"."""
    handler = logging.StreamHandler()
    if json_lines:
        handler.setFormatter(JsonFormatter(node_id))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root_level, named = parse_levels(level)
    root.setLevel(root_level)
    for name, logger_level in named.items():
        logging.getLogger(name).setLevel(logger_level)
    logging.captureWarnings(True)


def parse_levels(raw: str) -> tuple[str, dict[str, str]]:
    """TC_LOG_LEVEL's root level and its `logger=LEVEL` parts; ValueError if one is not a
    level."""
    root, *parts = [part.strip() for part in raw.split(",")]
    named = {}
    for part in parts:
        name, _, level = part.partition("=")
        named[name.strip()] = level.strip().upper()
    levels = [root.upper(), *named.values()]
    if "" in named or any(not isinstance(logging.getLevelName(x), int) for x in levels):
        raise ValueError(f"TC_LOG_LEVEL: {raw!r}: a level (DEBUG, INFO, WARNING, ERROR), then "
                         "optional logger=LEVEL parts after commas")
    return root.upper(), named


@dataclass(frozen=True)
class LogSettings:
    """What `configure` needs, picklable: the face worker processes log as their node does."""

    level: str
    node_id: str
    json_lines: bool = True

    def configure(self) -> None:
        configure(self.level, self.node_id, self.json_lines)
