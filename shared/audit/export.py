"""The audit export: every event of a period in global order, as NDJSON, streamed in pages so
memory stays flat however long the period.

A period is exported as one unbroken run of the chain: from the first event at or after
`from` to the last event before `to`, as chained when the export starts. (Event times come
from the requests' clocks and need not rise with the position, so a filter on time alone
could leave holes in the chain.) The trailer counts the lines and is signed, so an export
cannot be cut short or padded without the verifier noticing; it names the last position and
whether the export is complete (the chain held every event committed before the period's
end). Lines are masked as every other read is for the role that asks. A masked line is the one
the chain stored beside its link (`audit_chain.masked_line`: no personal data, never changed
by an erasure), so that export reads no event but those chained before the chain kept them.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.audit.chain import export_line, line_body, masked, record_of
from shared.audit.tables import audit_chain
from shared.audit.verify import trailer_message
from shared.readmodel.times import from_db, to_utc
from shared.store.application import StoredEvent
from shared.store.facade import ComplaintStore, consume

PAGE = 1000


def _line(value: dict[str, Any]) -> bytes:
    return f"{line_body(value)}\n".encode()


async def _bounds(
    engine: AsyncEngine, start: datetime | None, end: datetime | None
) -> tuple[int, int]:
    chain = audit_chain.c
    async with engine.connect() as conn:
        first_query = select(func.min(chain.position))
        last_query = select(func.max(chain.position))
        if start is not None:
            first_query = first_query.where(chain.at >= to_utc(start))
        if end is not None:
            last_query = last_query.where(chain.at < to_utc(end))
        first = await conn.scalar(first_query)
        last = await conn.scalar(last_query)
    return int(first or 0), int(last or 0)


async def first_chained_at(engine: AsyncEngine) -> datetime | None:
    """The earliest event time in the chain (None while it is empty)."""
    async with engine.connect() as conn:
        first = await conn.scalar(select(func.min(audit_chain.c.at)))
    return from_db(first)


Page = tuple[Sequence[Row[Any]], dict[int | None, StoredEvent]]


async def _page(
    store: ComplaintStore, engine: AsyncEngine, after: int, last: int, *, unmasked: bool
) -> Page:
    """The chain's next page after `after` (up to `last`) and the events by position of its
    rows whose line is not stored: every row's for `unmasked`, else those chained before the
    chain kept masked lines."""
    chain = audit_chain.c
    columns = [chain.position, chain.hash, chain.prev_hash]
    if not unmasked:
        columns.append(chain.masked_line)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(*columns)
                .where(chain.position > after, chain.position <= last)
                .order_by(chain.position)
                .limit(PAGE)
            )
        ).all()
    missing = [row.position for row in rows if unmasked or row.masked_line is None]
    events: list[StoredEvent] = []
    if missing:
        cursor = missing[0] - 1
        while cursor < missing[-1]:
            chunk = await store.read(cursor, PAGE, stop=missing[-1])
            if not chunk:
                break
            events.extend(chunk)
            cursor = chunk[-1].position or cursor
    return rows, {e.position: e for e in events}


def _prefetch(
    store: ComplaintStore, engine: AsyncEngine, after: int, last: int, *, unmasked: bool
) -> asyncio.Future[Page]:
    pending = asyncio.ensure_future(_page(store, engine, after, last, unmasked=unmasked))
    # If the client leaves first, a failure of the page nobody reads is still collected.
    pending.add_done_callback(consume)
    return pending


def _body(row: Row[Any], events: dict[int | None, StoredEvent], *, unmasked: bool) -> str:
    """A row's line without its hashes: the stored masked line, else computed from its event."""
    if not unmasked and row.masked_line is not None:
        return str(row.masked_line)
    record = record_of(events[row.position])
    return line_body(record if unmasked else masked(record))


async def export_lines(
    store: ComplaintStore,
    engine: AsyncEngine,
    key: Ed25519PrivateKey,
    *,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
    unmasked: bool,
) -> AsyncIterator[bytes]:
    """The lines of the period, a page at a time, then the signed trailer. The next page is
    read while this one is written out. `unmasked`: personal data in plaintext (with its
    salt), else as digests. Called once the chain has reached every event committed before
    the period's end (the route answers 503 rather than export short): the trailer says
    `complete`."""
    first, last = await _bounds(engine, start, end)
    count, first_prev, last_hash, last_position = 0, None, None, None
    pending = _prefetch(store, engine, first - 1, last, unmasked=unmasked) if first else None
    try:
        while pending is not None:
            rows, by_position = await pending
            if not rows:
                break
            after = rows[-1].position
            pending = (
                _prefetch(store, engine, after, last, unmasked=unmasked) if after < last else None
            )
            page = "".join(
                export_line(_body(row, by_position, unmasked=unmasked), row.hash, row.prev_hash)
                for row in rows
            )
            first_prev = rows[0].prev_hash if first_prev is None else first_prev
            count, last_hash, last_position = count + len(rows), rows[-1].hash, after
            yield page.encode()  # a write per line would cost more than the line
    finally:
        if pending is not None:  # the client went away
            pending.cancel()
    trailer = {
        "from": start.isoformat() if start else None,
        # The period ends at `to` capped at now: checkpoints signed after the export cannot
        # lie within it (a witness's later copy is not "missing" from an earlier export).
        "to": min(end, now).isoformat() if end else None,
        "count": count,
        "first_prev_hash": first_prev,
        "last_hash": last_hash,
        "last_position": last_position,
        "complete": True,
        "signed_at": now.isoformat(),
    }
    signature = key.sign(trailer_message(trailer))
    yield _line({"trailer": {**trailer, "signature": base64.b64encode(signature).decode()}})
