"""The audit export: every event of a period in global order, as NDJSON, streamed in pages so
memory stays flat however long the period."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.audit.chain import has_personal_data, record_of, salts_for
from shared.readmodel.tables import audit_chain
from shared.readmodel.times import to_utc
from shared.store.facade import ComplaintStore

PAGE = 1000


def _line(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


async def export_lines(
    store: ComplaintStore,
    engine: AsyncEngine,
    *,
    start: datetime | None,
    end: datetime | None,
) -> AsyncIterator[bytes]:
    """Lines for the events chained so far whose time lies in [start, end), then a trailer."""
    after, count, last_hash = -1, 0, None
    while True:
        query = select(audit_chain).where(audit_chain.c.position > after)
        if start is not None:
            query = query.where(audit_chain.c.at >= to_utc(start))
        if end is not None:
            query = query.where(audit_chain.c.at < to_utc(end))
        async with engine.connect() as conn:
            rows = (await conn.execute(query.order_by(audit_chain.c.position).limit(PAGE))).all()
            if not rows:
                break
            events = []
            cursor = rows[0].position - 1
            while cursor < rows[-1].position:
                chunk = await store.read(cursor, PAGE, stop=rows[-1].position)
                if not chunk:
                    break
                events.extend(chunk)
                cursor = chunk[-1].position or cursor
            salts = await salts_for(conn, {str(e.complaint_id) for e in events})
        by_position = {e.position: e for e in events}
        for row in rows:
            event = by_position[row.position]
            salt = salts.get(str(event.complaint_id)) if has_personal_data(event) else None
            line = record_of(event, salt)
            line["hash"], line["prev_hash"] = row.hash, row.prev_hash
            yield _line(line)
            count, last_hash = count + 1, row.hash
        after = rows[-1].position
    yield _line({"trailer": {"count": count, "last_hash": last_hash}})
