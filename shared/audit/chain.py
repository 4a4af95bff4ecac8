"""The audit chain projection: one SHA-256 chain over every event in global order.

The hash function is the standalone verifier's own (`shared.audit.verify`), so what we write
is by construction what a regulator's copy checks.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.audit.verify import GENESIS, record_hash
from shared.domain.chain import json_default
from shared.readmodel.tables import audit_chain, personal_salts
from shared.readmodel.times import to_utc
from shared.store.application import StoredEvent


def record_of(event: StoredEvent, salt: str | None) -> dict[str, Any]:
    """An event as one export line (without its hashes): JSON types only."""
    record = {
        "position": event.position,
        "aggregate": event.aggregate,
        "aggregate_id": str(event.aggregate_id),
        "complaint_id": str(event.complaint_id),
        "version": event.version,
        "type": event.type,
        "at": event.at.isoformat(),
        "ctx": event.ctx or None,
        "data": event.data,
        "salt": salt,
    }
    result: dict[str, Any] = json.loads(json.dumps(record, default=json_default))
    return result


def has_personal_data(event: StoredEvent) -> bool:
    return "intake" in event.data


@dataclass(frozen=True)
class ChainBatch:
    events: Sequence[StoredEvent]


class ChainProjection:
    name = "audit_chain"

    async def prepare(self, events: Sequence[StoredEvent]) -> ChainBatch:
        return ChainBatch(events)

    async def write(self, conn: AsyncConnection, prepared: ChainBatch) -> None:
        head = await conn.scalar(
            select(audit_chain.c.hash).order_by(audit_chain.c.position.desc()).limit(1)
        )
        prev = head or GENESIS
        salts = await salts_for(conn, {str(e.complaint_id) for e in prepared.events})
        rows = []
        for event in prepared.events:
            complaint_id = str(event.complaint_id)
            salt = salts.get(complaint_id)
            if salt is None and has_personal_data(event):
                salt = secrets.token_hex(16)
                salts[complaint_id] = salt
                await conn.execute(
                    personal_salts.insert().values(complaint_id=complaint_id, salt=salt)
                )
            line = record_of(event, salt if has_personal_data(event) else None)
            current = record_hash(prev, line)
            rows.append(
                {
                    "position": event.position,
                    "at": to_utc(event.at),
                    "hash": current,
                    "prev_hash": prev,
                }
            )
            prev = current
        if rows:
            await conn.execute(audit_chain.insert(), rows)

    async def reset(self, conn: AsyncConnection) -> None:
        # Salts are kept: a rebuilt chain must hash to the same heads the checkpoints signed.
        await conn.execute(delete(audit_chain))


async def salts_for(conn: AsyncConnection, complaint_ids: set[str]) -> dict[str, str]:
    if not complaint_ids:
        return {}
    rows = await conn.execute(
        select(personal_salts).where(personal_salts.c.complaint_id.in_(complaint_ids))
    )
    return {r.complaint_id: r.salt for r in rows}
