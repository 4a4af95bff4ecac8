"""Structured logs: one JSON object per line, each carrying the correlation id of the request
(or background task) it belongs to.

A request's correlation id is its `X-Request-ID` header if the client sent a UUID, else a new
one; it is echoed on the response, stored in the metadata of every event the request writes
(for good: hence only a UUID, never a client's free text, which could be personal data), and
sent on to the notification gateway with the messages those events asked for.
Logs never carry request bodies, query strings or personal data: only ids, paths, statuses.
uvicorn loads this configuration with `--log-config shared/logging.json` (`make run` and the
Dockerfile do). Each line's `time` is ISO-8601 in UTC, with its zone
(`2026-12-01T10:34:07.123+00:00`); the setup step's migrations (alembic) log at debug.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

#: The configuration every process logs by (uvicorn is handed it; the commands load it).
LOG_CONFIG = Path(__file__).resolve().parent / "logging.json"

#: The correlation id of the work in progress (a request, a message sent, a deadline escalated).
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

#: A UUID, with its hyphens (8-4-4-4-12) or without (as ours are made).
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}"
)


def new_correlation_id(offered: str | None = None) -> str:
    """The offered id if it is a UUID, else a fresh one."""
    if offered and _UUID.fullmatch(offered):
        return offered
    return uuid4().hex


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the span in progress (a traced request's), or None: traces
    off (`shared.http.tracing`), or no span."""
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return None
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{int(span.trace_flags):02x}"


class ContextFilter(logging.Filter):
    """Adds `correlation_id` to every record (None outside any request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        return True


class UtcJsonFormatter(JsonFormatter):
    """JSON lines whose time is ISO-8601 in UTC with its zone, to the millisecond, whatever
    the machine's local time zone."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


#: Loggers whose INFO lines are start-up noise (alembic's seven lines on every migration run):
#: shown only at debug level, as debug lines.
QUIET_AT_INFO = ("alembic",)


class QuietStartup(logging.Filter):
    """Lowers the INFO lines of `QUIET_AT_INFO` to DEBUG, and drops them unless the root
    logger is at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not record.name.startswith(QUIET_AT_INFO):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def configure(level: str = "info") -> None:
    """Log as the services do (LOG_CONFIG), the root logger at `level`: for the commands."""
    config = json.loads(LOG_CONFIG.read_text())
    config["root"]["level"] = level.upper()
    logging.config.dictConfig(config)
