"""The store every end-to-end test starts its services on: a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.processes import service_env, setup_store
from tests.postgres import create_database, drop_database


@pytest.fixture
def store_env(postgres_admin_url: str) -> Iterator[dict[str, str]]:
    url = create_database(postgres_admin_url)
    env = service_env(url, COMPLAINTS_PROJECTOR_LEASE_SECONDS="2")
    setup_store(env)
    yield env
    drop_database(postgres_admin_url, url)
