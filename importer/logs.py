"""Logging setup shared by every process (web, worker, command line).

``IMPORTER_LOG_FORMAT=json`` writes one JSON object per line (production);
``text`` writes readable lines (development). Either way there is one handler, on
the root logger, and everything goes through it: the app's own loggers, gunicorn's
error log (:class:`GunicornLogger`; the access log is replaced by the app's own line
per request, ``app.access``) and Celery's loggers (``worker_hijack_root_logger`` is
off, so they propagate to the root).

Every line written while a request, a batch or a task is handled carries its ids:
``request_id``, ``org_id``, ``batch_id``, ``task_id`` are kept in context variables
(:func:`bind`, :func:`clear`; set by the Flask hooks and the Celery signals) and
added to each record by :class:`ContextFilter`, which sits on the handler.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

from gunicorn.glogging import Logger as _GunicornBaseLogger
from pythonjsonlogger.json import JsonFormatter

from importer.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(ids)s: %(message)s"

#: The ids a log line can carry, in the order the text format shows them.
CONTEXT_IDS = ("request_id", "org_id", "batch_id", "task_id")
_TEXT_KEYS = {"request_id": "req", "org_id": "org", "batch_id": "batch", "task_id": "task"}
_context: dict[str, ContextVar[str | None]] = {
    name: ContextVar(name, default=None) for name in CONTEXT_IDS
}


def bind(**ids: str | None) -> None:
    """Set ids of the current context (a request's thread, a task); None unsets one."""
    for name, value in ids.items():
        _context[name].set(value)


def clear() -> None:
    """Unset every id (at the end of a request or a task)."""
    for var in _context.values():
        var.set(None)


def current() -> dict[str, str]:
    """The ids set in the current context."""
    return {name: value for name, var in _context.items() if (value := var.get()) is not None}


class ContextFilter(logging.Filter):
    """Adds the context's ids to each record (unless the call passed its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _context.items():
            value = var.get()
            if value is not None and getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """Readable lines; the ids, when there are any, right after the logger's name:
    ``... INFO    app.access [req=3f2a... batch=cbbatch_...]: POST /v1/import/vendors 200``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        ids = [
            f"{_TEXT_KEYS[name]}={value}"
            for name in CONTEXT_IDS
            if (value := getattr(record, name, None)) is not None
        ]
        record.ids = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return TextFormatter()


def make_handler(settings: Settings, stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler(settings)]
    root.setLevel(settings.log_level)
    logging.captureWarnings(True)  # warnings.warn() becomes a log line (py.warnings)


class GunicornLogger(_GunicornBaseLogger):  # type: ignore[misc]
    """gunicorn's logger, writing through the root handler: its error log (start-up,
    workers booting and exiting) propagates to the root like any other logger, and its
    access log is off (the app writes one ``app.access`` line per request instead)."""

    def setup(self, cfg: Any) -> None:
        self.cfg = cfg
        self._access_log_enabled = False
        self.loglevel = self.LOG_LEVELS.get(cfg.loglevel.lower(), logging.INFO)
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
        self.error_log.setLevel(self.loglevel)
        self.error_log.propagate = True
        self.access_log.propagate = False

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None
