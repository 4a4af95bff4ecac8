"""Page cursors of the lists: where the next page starts, in a form the OpenAPI states.

A cursor names the last row of a page by its keys in every order a list offers: its time
(acceptance, or declaration for incidents) and its next due time, each in microseconds since
the Unix epoch (UTC; `n` when no limit is counting), and its id (32 lowercase hex digits):
`1763598600000000.1763771400000000.3f2c…`. Any string of that form is a place in either order,
so a client (or a fuzzer) that follows the pattern is never refused, whichever `sort` it
pages with; one that does not gets 422 naming the cursor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

#: What `cursor` parameters accept (at most 16 digits: up to the year 2286).
CURSOR_PATTERN = r"^[0-9]{1,16}\.([0-9]{1,16}|n)\.[0-9a-f]{32}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class Place:
    """The row a cursor names: after it, the next page starts."""

    at: datetime
    due: datetime | None
    row_id: str


def encode_cursor(at: datetime, row_id: str | UUID, due: datetime | None = None) -> str:
    return f"{_micros(at)}.{_micros(due) if due else 'n'}.{UUID(str(row_id)).hex}"


def decode_cursor(cursor: str) -> Place:
    if not _CURSOR.match(cursor):
        raise InvalidCursor(
            "cursor is not one this API issued: pass the `next_cursor` of the page before"
        )
    at, due, row_id = cursor.split(".")
    return Place(_moment(at), None if due == "n" else _moment(due), str(UUID(row_id)))


def _micros(at: datetime) -> int:
    return (at.astimezone(UTC) - _EPOCH) // _MICROSECOND


def _moment(micros: str) -> datetime:
    return _EPOCH + int(micros) * _MICROSECOND
