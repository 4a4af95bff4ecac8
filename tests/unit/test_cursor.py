"""Page cursors: what a list hands out comes back to the same place, and every string of the
form the OpenAPI states is a place in either order (a client that follows the schema is never
refused)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from shared.readmodel.cursor import CURSOR_PATTERN, InvalidCursor, decode_cursor, encode_cursor

BEIJING = timezone(timedelta(hours=8))


def test_a_cursor_names_the_row_it_was_made_from() -> None:
    at = datetime(2026, 11, 20, 8, 30, 0, 123456, tzinfo=BEIJING)
    due = datetime(2026, 11, 22, 17, 0, tzinfo=BEIJING)
    row = uuid4()
    for made in (encode_cursor(at, str(row), due), encode_cursor(at, row)):
        assert re.fullmatch(CURSOR_PATTERN, made)
        place = decode_cursor(made)
        assert (place.at, place.row_id) == (at.astimezone(UTC), str(row))
    assert decode_cursor(encode_cursor(at, row, due)).due == due.astimezone(UTC)
    assert decode_cursor(encode_cursor(at, row)).due is None


@pytest.mark.parametrize(
    "cursor", ["0.n." + "0" * 32, "9" * 16 + "." + "9" * 16 + "." + "f" * 32, "1.2." + "a" * 32]
)
def test_every_cursor_of_the_stated_form_is_a_place(cursor: str) -> None:
    place = decode_cursor(cursor)
    assert place.at.tzinfo is not None and UUID(place.row_id).hex == cursor.split(".")[2]


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", "1.n." + "A" * 32, "1" * 17 + ".n." + "0" * 32, "1." + "0" * 32, ""],
)
def test_anything_else_is_refused_by_name(cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="next_cursor"):
        decode_cursor(cursor)
