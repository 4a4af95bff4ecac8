"""The audit chain projection: one SHA-256 chain over every event in global order.

The hash function is the standalone verifier's own (`shared.audit.verify`), so what we write
is by construction what a regulator's copy checks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.audit.tables import audit_chain
from shared.audit.verify import GENESIS, committed_data, record_hash
from shared.domain.personal import as_record
from shared.readmodel.times import to_utc
from shared.store.application import StoredEvent


def record_of(event: StoredEvent) -> dict[str, Any]:
    """An event as one export line (without its hashes): JSON types only.

    Personal data appears in plaintext with the salt of the customer's key, or, once erased,
    as the salted digest the chain committed to; either way the line hashes the same. A
    major incident's events concern many complaints: their `complaint_id` is null. The
    event's ctx and data enter as stored, never upcast (`StoredEvent.committed`).
    """
    ctx, data = event.committed
    return {
        "position": event.position,
        "aggregate": event.aggregate,
        "aggregate_id": str(event.aggregate_id),
        "complaint_id": str(event.complaint_id) if event.complaint_id else None,
        "version": event.version,
        "type": event.type,
        "at": event.at.isoformat(),
        "ctx": as_record(ctx) or None,
        "data": as_record(data),
        "salt": event.salt,
    }


def masked(record: dict[str, Any]) -> dict[str, Any]:
    """An export line for a role that does not see personal data: every personal field as the
    salted digest the chain committed to, and no salt (that would let a reader try phone
    numbers against the digests). It hashes the same, as an erased line does."""
    return {**record, "data": committed_data(record["data"], record["salt"]), "salt": None}


def line_body(line: dict[str, Any]) -> str:
    """An export line without its hashes (`record_of`, masked or not): compact JSON, keys in
    the record's order. The chain stores each event's masked body (`masked_line`)."""
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def export_line(body: str, chain_hash: str, prev_hash: str) -> str:
    """The export line (UTF-8 on the wire): its body with the hashes it chained with as its
    last fields (what `json.dumps` of the line with `hash` and `prev_hash` added would give)."""
    return f'{body[:-1]},"hash":"{chain_hash}","prev_hash":"{prev_hash}"}}\n'


@dataclass(frozen=True)
class ChainBatch:
    events: Sequence[StoredEvent]


class ChainProjection:
    name = "audit_chain"
    folds = False

    async def prepare(self, events: Sequence[StoredEvent]) -> ChainBatch:
        return ChainBatch(events)

    async def write(self, conn: AsyncConnection, prepared: ChainBatch) -> None:
        head = await conn.scalar(
            select(audit_chain.c.hash).order_by(audit_chain.c.position.desc()).limit(1)
        )
        prev = head or GENESIS
        rows = []
        for event in prepared.events:
            # The masked line hashes as the record does: it holds the digests committed to.
            line = masked(record_of(event))
            current = record_hash(prev, line)
            rows.append(
                {
                    "position": event.position,
                    "at": to_utc(event.at),
                    "hash": current,
                    "prev_hash": prev,
                    "masked_line": line_body(line),
                }
            )
            prev = current
        if rows:
            await conn.execute(audit_chain.insert(), rows)

    async def reset(self, conn: AsyncConnection) -> None:
        # A rebuilt chain hashes to the same heads the checkpoints signed: erased fields keep
        # the digests they were committed by.
        await conn.execute(delete(audit_chain))
