"""Duplicate keys in a JSON body: refused, not resolved.

Python's parser keeps the last of two equal keys, others keep the first: a body that says two
things about one field is refused (400) before anything reads it, rather than stored as either.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any


class _Object(dict[str, Any]):
    """A decoded JSON object, with the keys it was given more than once."""

    repeated: tuple[str, ...] = ()


def duplicate_keys(body: bytes) -> list[str]:
    """The keys `body` repeats within one object, as field paths (`customer.name`,
    `evidence.0.ref`); none for a body that is not JSON (the route answers that)."""
    any_repeated = False

    def decode_object(pairs: list[tuple[str, Any]]) -> _Object:
        nonlocal any_repeated
        decoded = _Object(pairs)
        if len(decoded) < len(pairs):
            any_repeated = True
            counts = Counter(key for key, _ in pairs)
            decoded.repeated = tuple(key for key, count in counts.items() if count > 1)
        return decoded

    try:
        decoded = json.loads(body, object_pairs_hook=decode_object)
    except (ValueError, RecursionError):
        return []
    if not any_repeated:
        return []
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", decoded)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _Object):
            found.extend(f"{path}{key}" for key in value.repeated)
            stack.extend((f"{path}{key}.", item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{path}{index}.", item) for index, item in enumerate(value))
    return sorted(found)
