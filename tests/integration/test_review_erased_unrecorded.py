"""Review: a keyed acceptance whose customer's key is destroyed between its key read and its
append, and whose connection is lost once the append has committed, is found by its retry
and answered without the erasure being recorded on it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg
import pytest

from shared.domain.clock import FixedClock
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from shared.store.keystore import SqlKeyStore
from tests.conftest import intake_body
from tests.integration.test_global_order import context

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def test_an_acceptance_racing_an_erasure_records_it_even_when_retried(
    store: ComplaintStore, settings: Settings, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = {"id": "cust-race", "name": "张伟", "phone": "13812341234"}
    await store.accept(intake_body(customer=customer), context(clock, 1))  # the customer's key
    dsn = settings.url.set(drivername="postgresql").render_as_string(hide_password=False)
    prepare = SqlKeyStore.prepare
    execute = psycopg.Cursor.execute
    state = {"destroyed": False, "lost": False}

    def prepare_then_erase(self: Any, complaint_id: str, customer_id: str) -> Any:
        result = prepare(self, complaint_id, customer_id)
        if not state["destroyed"]:  # the erasure destroys the key now (its step 3 is done)
            state["destroyed"] = True
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("DELETE FROM wrapped_keys WHERE customer_id = %s", (customer_id,))
        return result

    def lost_after_append(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        result = execute(self, query, *args, **kwargs)
        text = query.as_string(self) if hasattr(query, "as_string") else str(query)
        if "complaints_events_append" in text and not state["lost"]:
            state["lost"] = True  # committed; the answer never arrives
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return result

    monkeypatch.setattr(SqlKeyStore, "prepare", prepare_then_erase)
    monkeypatch.setattr(psycopg.Cursor, "execute", lost_after_append)
    ctx = replace(context(clock, 2), idempotency_key="k-race", request_fingerprint="fp")
    written = await store.accept(intake_body(customer=customer), ctx)
    monkeypatch.undo()
    assert state == {"destroyed": True, "lost": True}
    complaint = await store.get(written.complaint.id)
    assert str(complaint.intake["customer"]["name"]) == "[erased]"  # its key is gone
    assert complaint.personal_data_erased_at is not None, "erased, but the erasure not recorded"
