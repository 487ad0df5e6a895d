"""The service's logs: text or JSON lines, the request and session they belong to, and an
in-memory tail of the `orchestrator` logger for `GET /logs`.

`request_id` and `session_id` are context variables: the HTTP middleware sets the first for
each request, the WebSocket route the second for each session, and the tasks a session starts
inherit it. Nothing here runs at import: `logging_config` is handed to uvicorn by
`python -m orchestrator`, and the app installs its `LogRing` for its lifespan.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import os
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from uvicorn.config import LOGGING_CONFIG

LogFormat = Literal["text", "json"]
REQUEST_ID: ContextVar[str | None] = ContextVar("prefill_request_id", default=None)
SESSION_ID: ContextVar[str | None] = ContextVar("prefill_session_id", default=None)
LOGGER = "orchestrator"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TAIL_BLOCK_BYTES = 64 * 1024
TAIL_MAX_BYTES = 8 * 1024 * 1024  # a tail of lines longer than this is cut


def record_ids(record: logging.LogRecord) -> dict[str, str]:
    """The request and session a record belongs to (`extra=` wins over the context)."""
    ids = {
        "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        "session_id": getattr(record, "session_id", None) or SESSION_ID.get(),
    }
    return {key: str(value) for key, value in ids.items() if value}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, and request_id / session_id
    when known (and the traceback as `exc_info`)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **record_ids(record),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The plain format, with `[request_id=... session_id=...]` appended when known."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = record_ids(record)
        if not ids:
            return text
        return f"{text} [{' '.join(f'{key}={value}' for key, value in ids.items())}]"


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


class LogRing(logging.Handler):
    """The last `capacity` records of a logger, formatted, in memory."""

    def __init__(self, capacity: int, log_format: LogFormat = "text") -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self.guard = threading.Lock()
        self.setFormatter(formatter_for(log_format))
        self.installed_on: logging.Logger | None = None
        self.level_before = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self.guard:
            self.lines.append(line)

    def tail(self, n: int) -> list[str]:
        with self.guard:
            return list(self.lines)[-n:] if n > 0 else []

    def install(self, name: str = LOGGER) -> None:
        """Collect `name`'s records (INFO and up, unless its level is set otherwise)."""
        logger = logging.getLogger(name)
        self.installed_on, self.level_before = logger, logger.level
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        logger.addHandler(self)

    def uninstall(self) -> None:
        """Stop collecting; the logger's level is put back once no other ring collects."""
        logger = self.installed_on
        if logger is None:
            return
        logger.removeHandler(self)
        if not any(isinstance(handler, LogRing) for handler in logger.handlers):
            logger.setLevel(self.level_before)
        self.installed_on = None


def logging_config(log_format: LogFormat) -> dict[str, Any]:
    """uvicorn's logging configuration, with the `orchestrator` logger on stderr (INFO and
    up); in `json` every line of uvicorn's and of ours is one JSON object."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["orchestrator"] = {"()": f"{__name__}.TextFormatter"}
    if log_format == "json":
        config["formatters"] = {"orchestrator": {"()": f"{__name__}.JsonFormatter"}}
        for handler in config["handlers"].values():
            handler["formatter"] = "orchestrator"
    config["handlers"]["orchestrator"] = {
        "formatter": "orchestrator",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["loggers"][LOGGER] = {"handlers": ["orchestrator"], "level": "INFO", "propagate": False}
    return config


def tail_lines(path: Path, n: int) -> list[str]:
    """The last `n` lines of the file at `path` (read backwards, at most TAIL_MAX_BYTES);
    none when there is no such file."""
    try:
        with path.open("rb") as file:
            end = file.seek(0, os.SEEK_END)
            data = b""
            while end > 0 and data.count(b"\n") <= n and len(data) < TAIL_MAX_BYTES:
                start = max(0, end - TAIL_BLOCK_BYTES)
                file.seek(start)
                data = file.read(end - start) + data
                end = start
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return []
    return data.decode(errors="replace").splitlines()[-n:]
