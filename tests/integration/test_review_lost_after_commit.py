"""Review: the connection is lost after the append committed (on the NOTIFY that follows it,
or before the append's own reply arrived): the recorder retries the whole append, which finds
its own events and fails, and an acceptance without an Idempotency-Key is refused although it
was accepted."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from shared.domain.clock import FixedClock
from shared.store.facade import ComplaintStore
from tests.conftest import intake_body
from tests.integration.test_global_order import context

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def test_an_acceptance_whose_notify_is_lost_is_answered_once(
    store: ComplaintStore, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute = psycopg.Cursor.execute
    lost: list[str] = []

    def losing(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if not lost and "NOTIFY" in (
            query.as_string(self) if hasattr(query, "as_string") else str(query)
        ):
            lost.append("NOTIFY")
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", losing)
    error: Exception | None = None
    try:
        await store.accept(intake_body(), context(clock))
    except Exception as exc:
        error = exc
    monkeypatch.undo()
    async with store.engine.connect() as conn:
        accepted = await conn.scalar(
            text("SELECT count(*) FROM complaints_events WHERE topic LIKE '%Complaint.Accepted'")
        )
    assert lost == ["NOTIFY"]
    assert accepted == 1
    assert error is None, f"accepted, yet answered {error!r}"


async def test_an_acceptance_whose_reply_is_lost_after_its_commit_is_answered_once(
    store: ComplaintStore, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The append committed, then its reply never came back (the connection dropped): the
    append is sent again and collides with its own events. The retry finds the complaint this
    very request wrote (its id is new, and its events record the request) and answers it."""
    execute = psycopg.Cursor.execute
    lost: list[str] = []

    def losing(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent = query.as_string(self) if hasattr(query, "as_string") else str(query)
        result = execute(self, query, *args, **kwargs)
        if not lost and "complaints_events_append" in sent:
            lost.append("append")  # committed (autocommit), its answer lost on the way
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return result

    monkeypatch.setattr(psycopg.Cursor, "execute", losing)
    ctx = context(clock)
    error: Exception | None = None
    written = None
    try:
        written = await store.accept(intake_body(), ctx)
    except Exception as exc:
        error = exc
    monkeypatch.undo()
    async with store.engine.connect() as conn:
        accepted = (
            await conn.execute(
                text(
                    "SELECT originator_id FROM complaints_events "
                    "WHERE topic LIKE '%Complaint.Accepted'"
                )
            )
        ).all()
    assert lost == ["append"]
    assert len(accepted) == 1
    assert error is None, f"accepted, yet answered {error!r}"
    assert written is not None and written.complaint.id == accepted[0][0]
    assert (await store.get(written.complaint.id)).version == 1
