"""Hash links between a complaint's events: each event's hash covers the one before it."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

GENESIS = "0" * 64


def json_default(value: object) -> str:
    """How event values that JSON lacks are written: times as ISO 8601, ids and money as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} has no JSON form")


def canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=json_default
    )


def link(prev_hash: str, record: dict[str, Any]) -> str:
    """The hash of `record` chained to `prev_hash` (SHA-256 over prev_hash + canonical JSON)."""
    return hashlib.sha256((prev_hash + canonical_json(record)).encode()).hexdigest()


def chain(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(prev_hash, hash) for each record in order."""
    links = []
    prev = GENESIS
    for record in records:
        current = link(prev, record)
        links.append((prev, current))
        prev = current
    return links
