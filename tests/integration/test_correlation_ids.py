"""A client's X-Request-ID becomes the correlation id stored in its request's events for good,
so it is kept only if it is a UUID: anything else (a phone number) is replaced by a new one."""

from __future__ import annotations

from uuid import UUID

from tests.conftest import intake_body
from tests.integration.conftest import Api

#: A phone number (not the customer's in intake_body) sent as a request id.
PHONE = "13900005678"


async def test_a_phone_number_as_request_id_is_neither_stored_nor_echoed(api: Api) -> None:
    created = await api.accept(intake_body(), **{"X-Request-ID": PHONE})
    assert created.status_code == 201
    given = created.headers["X-Request-ID"]
    assert given != PHONE
    UUID(given)  # a new one, a UUID
    history = await api.get(f"/complaints/{created.json()['id']}/history")
    assert [e["correlation_id"] for e in history.json()["events"]] == [given]
    assert PHONE not in history.text


async def test_a_uuid_as_request_id_is_kept(api: Api) -> None:
    offered = "6f1c2a9e-3b7d-4e58-9a0c-d41e7b2f8c35"
    created = await api.accept(intake_body(), **{"X-Request-ID": offered})
    assert created.headers["X-Request-ID"] == offered
    history = await api.get(f"/complaints/{created.json()['id']}/history")
    assert [e["correlation_id"] for e in history.json()["events"]] == [offered]
