"""Durable Idempotency-Key records: a claim while the first request runs, then its answer.

An answer about a complaint is kept without its body, which would hold the customer's personal
data: only the complaint's id and a recipe to show it again (the version shown, when and to
whom; see `shared.http.commands.answer_recipe`). Other answers (problems, an erasure's account)
hold no personal data and are kept as they were sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.domain.clock import Clock
from shared.store.tables import idempotency_keys


@dataclass(frozen=True)
class Claimed:
    """This request owns the key until `complete`/`release`/`abandon`, or the lease runs out.

    `token`: when the claim was taken; only its holder may finish it.
    """

    token: float


@dataclass(frozen=True)
class Replay:
    status_code: int
    headers: dict[str, str]
    body: bytes
    #: An answer about a complaint: shown again from the store by this recipe, `body` empty.
    complaint_id: str | None = None
    recipe: dict[str, Any] | None = None


@dataclass(frozen=True)
class InProgress:
    """The first request with this key is still running."""


@dataclass(frozen=True)
class Mismatch:
    """The key was used before with another request."""


ClaimResult = Claimed | Replay | InProgress | Mismatch


@dataclass(frozen=True)
class StoredAnswer:
    """An answer about a complaint, stored by the write it tells about, in that write's own
    transaction (`shared.store.postgres`, `shared.store.sqlite`): no claim before it and no
    statement after it. The write fills in its position: the `event-position` header and the
    recipe's `position`."""

    client: str
    key: str
    request_hash: str
    claimed_at: float
    status_code: int
    headers: dict[str, str]
    complaint_id: str
    recipe: dict[str, Any]

    def at(self, position: int | None) -> dict[str, Any]:
        """Its row in `idempotency_keys`, the write's position filled in."""
        row = self.as_json()
        if position is not None:
            row["headers"] = {**self.headers, "event-position": str(position)}
        return {
            **row,
            "state": "done",
            "body": None,
            "recipe": {**self.recipe, "position": position},
        }

    def as_json(self) -> dict[str, Any]:
        """What `complaints_events_append` reads (migration 0020); it fills in the position."""
        return {
            "client": self.client,
            "key": self.key,
            "request_hash": self.request_hash,
            "claimed_at": self.claimed_at,
            "status_code": self.status_code,
            "headers": self.headers,
            "complaint_id": self.complaint_id,
            "recipe": self.recipe,
        }


@dataclass(frozen=True)
class Unanswered:
    """No answer is stored under the key (nor a live claim): the request runs without a claim,
    and its answer is stored by its write (`StoredAnswer`) or, if it wrote nothing, after it
    (`IdempotencyStore.record`). Racing duplicates are told apart by what they write (an
    acceptance's id comes from its key), not by a claim."""

    client: str
    key: str
    request_hash: str
    claimed_at: float

    def answer(
        self, status_code: int, headers: dict[str, str], complaint_id: str, recipe: dict[str, Any]
    ) -> StoredAnswer:
        return StoredAnswer(
            self.client,
            self.key,
            self.request_hash,
            self.claimed_at,
            status_code,
            headers,
            complaint_id,
            recipe,
        )


LookResult = Unanswered | Replay | InProgress | Mismatch


class IdempotencyStore:
    def __init__(self, engine: AsyncEngine, clock: Clock, lease_seconds: float) -> None:
        self.engine = engine
        self.clock = clock
        self.lease_seconds = lease_seconds

    def _now(self) -> float:
        return self.clock().timestamp()

    @asynccontextmanager
    async def _statements(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose every statement commits by itself: each change here is one
        statement (a claim, a compare-and-set), so no BEGIN and COMMIT round trips."""
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    async def claim(
        self, client: str, key: str, request_hash: str, *, legacy_hash: str | None = None
    ) -> ClaimResult:
        """Claim the key for the request with this fingerprint (`shared.http.fingerprint`);
        a claim taken before revision 0016 names its request by `legacy_hash` instead."""
        now = self._now()
        try:
            async with self._statements() as conn:
                await conn.execute(
                    insert(idempotency_keys).values(
                        client=client,
                        key=key,
                        request_hash=request_hash,
                        state="running",
                        claimed_at=now,
                    )
                )
            return Claimed(token=now)
        except IntegrityError:
            pass
        where = and_(idempotency_keys.c.client == client, idempotency_keys.c.key == key)
        async with self._statements() as conn:  # the take-over below is compared-and-set
            row = (await conn.execute(select(idempotency_keys).where(where))).mappings().first()
            if row is None:  # released meanwhile: let the client retry
                return InProgress()
            judged = self._judged(row, request_hash, legacy_hash, now)
            if judged is not None:
                return judged
            taken = await conn.execute(
                update(idempotency_keys)
                .where(where, idempotency_keys.c.claimed_at == row["claimed_at"])
                .values(claimed_at=now)
            )
            return Claimed(token=now) if taken.rowcount == 1 else InProgress()

    async def look(
        self, client: str, key: str, request_hash: str, *, legacy_hash: str | None = None
    ) -> LookResult:
        """What is stored under the key, in one read and no commit: its answer (or that it is
        another request's, or still running), else `Unanswered`, whose write stores its answer
        with it. A claim whose lease ran out counts as unanswered (its request may have
        written: the write finds out, as every keyed command does)."""
        now = self._now()
        where = and_(idempotency_keys.c.client == client, idempotency_keys.c.key == key)
        async with self._statements() as conn:
            row = (await conn.execute(select(idempotency_keys).where(where))).mappings().first()
        judged = self._judged(row, request_hash, legacy_hash, now) if row is not None else None
        return judged if judged is not None else Unanswered(client, key, request_hash, now)

    def _judged(
        self, row: Any, request_hash: str, legacy_hash: str | None, now: float
    ) -> Replay | InProgress | Mismatch | None:
        """What a row stored under the key tells the request with this fingerprint: another
        request's key, its answer, or a live claim; None for a claim whose lease ran out (the
        request may take it over)."""
        if row["request_hash"] not in (request_hash, legacy_hash):
            return Mismatch()
        if row["state"] == "done":
            return _replay(row)
        if row["claimed_at"] > now - self.lease_seconds:
            return InProgress()
        return None

    async def record(
        self,
        unanswered: Unanswered,
        status_code: int,
        headers: dict[str, str],
        body: bytes | None,
        complaint_id: str | None = None,
        recipe: dict[str, Any] | None = None,
    ) -> None:
        """Store the answer of a request that ran `Unanswered` and whose write did not store
        it (it wrote nothing new: a refusal, a complaint its key had accepted already), in
        place of a claim of the same request that ran out, unless an answer or another
        request's claim is stored under the key by now (one statement)."""
        assert complaint_id is None or (body is None and recipe is not None)
        values = {
            "client": unanswered.client,
            "key": unanswered.key,
            "request_hash": unanswered.request_hash,
            "state": "done",
            "claimed_at": unanswered.claimed_at,
            "status_code": status_code,
            "headers": headers,
            "body": body,
            "complaint_id": complaint_id,
            "recipe": recipe,
        }
        dialect = postgresql_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        upsert = (
            dialect(idempotency_keys)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[idempotency_keys.c.client, idempotency_keys.c.key],
                set_={k: v for k, v in values.items() if k not in ("client", "key")},
                where=and_(
                    idempotency_keys.c.state == "running",
                    idempotency_keys.c.request_hash == unanswered.request_hash,
                ),
            )
        )
        async with self._statements() as conn:
            await conn.execute(upsert)

    def _held(self, client: str, key: str, claim: Claimed) -> Any:
        return and_(
            idempotency_keys.c.client == client,
            idempotency_keys.c.key == key,
            idempotency_keys.c.state == "running",
            idempotency_keys.c.claimed_at == claim.token,
        )

    async def complete(
        self,
        client: str,
        key: str,
        claim: Claimed,
        status_code: int,
        headers: dict[str, str],
        body: bytes | None,
        complaint_id: str | None = None,
        recipe: dict[str, Any] | None = None,
    ) -> None:
        """Store the answer, unless another request took the claim over meanwhile. An answer
        about a complaint is stored as its id and `recipe`, without a body."""
        assert complaint_id is None or (body is None and recipe is not None)
        async with self._statements() as conn:
            await conn.execute(
                update(idempotency_keys)
                .where(self._held(client, key, claim))
                .values(
                    state="done",
                    status_code=status_code,
                    headers=headers,
                    body=body,
                    complaint_id=complaint_id,
                    recipe=recipe,
                )
            )

    async def release(self, client: str, key: str, claim: Claimed) -> None:
        """Forget a claim whose request wrote nothing (refused, unauthorised, conflicting)."""
        async with self._statements() as conn:
            await conn.execute(delete(idempotency_keys).where(self._held(client, key, claim)))

    async def abandon(self, client: str, key: str, claim: Claimed) -> None:
        """The request failed on our side and may have written: the next retry takes the key
        over at once, and finds what this one wrote before acting (as every keyed command does)."""
        async with self._statements() as conn:
            await conn.execute(
                update(idempotency_keys).where(self._held(client, key, claim)).values(claimed_at=0)
            )

    async def forget_complaints(self, complaint_ids: Iterable[UUID]) -> int:
        """Drop the stored answers about these complaints (their customer's data is erased).
        They hold none of it; a retry finds what its request wrote all the same."""
        ids = [str(i) for i in complaint_ids]
        if not ids:
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(idempotency_keys).where(idempotency_keys.c.complaint_id.in_(ids))
            )
        return int(result.rowcount or 0)

    async def forget_older_than(self, seconds: float) -> int:
        """Drop stored answers claimed more than `seconds` ago; returns how many.

        A retry after that finds what its request wrote (an acceptance its complaint, by the id
        the key gives; a command its event, by the key recorded on it), and the key presented
        with another request is refused by the fingerprint recorded on those events. Abandoned
        claims stay: a retry must still find out what their request wrote.
        """
        cutoff = self._now() - seconds
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.state == "done",
                    idempotency_keys.c.claimed_at > 0,
                    idempotency_keys.c.claimed_at < cutoff,
                )
            )
        return int(result.rowcount or 0)


def _replay(row: Any) -> Replay:
    """The stored answer of a row that is done."""
    headers: dict[str, Any] = row["headers"] or {}
    return Replay(
        row["status_code"],
        dict(headers),
        bytes(row["body"] or b""),
        row["complaint_id"],
        row["recipe"],
    )
