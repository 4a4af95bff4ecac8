"""Structured logs: one JSON object per line, each carrying the correlation id of the request
(or background task) it belongs to.

A request's correlation id is its `X-Request-ID` header if the client sent a UUID, else a new
one; it is echoed on the response, stored in the metadata of every event the request writes
(for good: hence only a UUID, never a client's free text, which could be personal data), and
sent on to the notification gateway with the messages those events asked for.
Logs never carry request bodies, query strings or personal data: only ids, paths, statuses.
uvicorn loads this configuration with `--log-config shared/logging.json` (`make run` and the
Dockerfile do).
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from uuid import uuid4

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


class ContextFilter(logging.Filter):
    """Adds `correlation_id` to every record (None outside any request or task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        return True
