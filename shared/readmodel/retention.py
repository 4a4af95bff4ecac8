"""Which customers' personal data has been kept long enough (the retention setting)."""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import and_, exists, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.domain.lifecycle import RETAINED_FROM
from shared.readmodel.tables import complaint_summaries
from shared.readmodel.times import to_utc
from shared.store.tables import customer_complaints, wrapped_keys

#: A complaint bound to its customer's key this long ago but never stored was lost (its
#: acceptance failed): it no longer keeps the customer's data.
LOST_AFTER_SECONDS = 86_400.0


async def customers_due_for_erasure(
    engine: AsyncEngine, archived_before: datetime, limit: int
) -> list[str]:
    """Customers who still have a key and whose every complaint was archived (its last event)
    before `archived_before`. A complaint the read model does not know yet keeps its
    customer's data, unless its acceptance was bound a day ago and never stored."""
    summary = complaint_summaries.c
    link = customer_complaints.c
    kept = (
        select(link.complaint_id)
        .select_from(
            customer_complaints.outerjoin(
                complaint_summaries, summary.complaint_id == link.complaint_id
            )
        )
        .where(
            link.customer_id == wrapped_keys.c.customer_id,
            or_(
                and_(summary.status.is_(None), link.bound_at > time.time() - LOST_AFTER_SECONDS),
                summary.status != RETAINED_FROM.value,
                summary.updated_at >= to_utc(archived_before),
            ),
        )
    )
    archived = select(link.complaint_id).where(
        link.customer_id == wrapped_keys.c.customer_id,
        link.complaint_id.in_(select(summary.complaint_id)),
    )
    query = (
        select(wrapped_keys.c.customer_id)
        .where(exists(archived), not_(exists(kept)))
        .order_by(wrapped_keys.c.customer_id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        return [str(row) for row in (await conn.scalars(query)).all()]
