"""Round trips and commits per request: what one acceptance (with and without an
Idempotency-Key), one read of a complaint and one evidence item cost the database, counted in
the process that serves them.

The intake app runs in-process on a PostgreSQL database of its own, its background jobs off
(the projector's statements are not the request's). Every statement the request sends is
counted where it leaves the process: psycopg's `execute` (the event store's recorder and key
store) and SQLAlchemy's cursor executions (our own tables, asyncpg), plus each transaction's
BEGIN and COMMIT on the SQLAlchemy side. A *durable commit* is a transaction that wrote: an
autocommit statement that writes (the events' append, an Idempotency-Key claim or answer), or
a SQLAlchemy transaction that ran an INSERT, UPDATE or DELETE; PostgreSQL flushes its WAL for
each.

    python -m bench.trips    # prints JSON: the median per request of each kind
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from sqlalchemy import event

from bench.own import own_database, quiet_settings
from services.intake.main import create_app
from shared.http.auth import mint_token
from shared.settings import Settings

WRITES = ("INSERT", "UPDATE", "DELETE")
#: Statements of the event store that write in autocommit (one durable commit each).
AUTOCOMMIT_WRITES = ("complaints_events_append",)


class Counter:
    def __init__(self) -> None:
        self.trips = 0
        self.commits = 0
        self._writing: dict[int, bool] = {}

    @contextmanager
    def psycopg(self) -> Iterator[None]:
        execute = psycopg.Cursor.execute

        def counted(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            self.trips += 1
            text = query if isinstance(query, str) else query.as_string(cursor.connection)
            if any(mark in text for mark in AUTOCOMMIT_WRITES):
                self.commits += 1
            return execute(cursor, query, *args, **kwargs)

        psycopg.Cursor.execute = counted  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            psycopg.Cursor.execute = execute  # type: ignore[method-assign]

    def sqlalchemy(self, engine: Any) -> None:
        sync = engine.sync_engine
        ping = sync.dialect.do_ping

        def counted_ping(dbapi_connection: Any) -> Any:
            self.trips += 1  # the pool's check before it hands out a connection
            return ping(dbapi_connection)

        sync.dialect.do_ping = counted_ping

        def autocommit(conn: Any) -> bool:
            """BEGIN, COMMIT and ROLLBACK are not sent in autocommit (only their events run)."""
            return bool(conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT")

        @event.listens_for(sync, "before_cursor_execute")
        def statement(conn: Any, _c: Any, text: str, *_: Any) -> None:
            self.trips += 1
            if text.lstrip().upper().startswith(WRITES):
                if autocommit(conn):
                    self.commits += 1  # commits by itself
                else:
                    self._writing[id(conn.connection)] = True

        @event.listens_for(sync, "begin")
        def begin(conn: Any) -> None:
            if not autocommit(conn):
                self.trips += 1
                self._writing[id(conn.connection)] = False

        @event.listens_for(sync, "commit")
        def commit(conn: Any) -> None:
            if not autocommit(conn):
                self.trips += 1
                if self._writing.pop(id(conn.connection), False):
                    self.commits += 1

        @event.listens_for(sync, "rollback")
        def rollback(conn: Any) -> None:
            if not autocommit(conn):
                self.trips += 1
                self._writing.pop(id(conn.connection), None)

    def take(self) -> tuple[int, int]:
        taken = self.trips, self.commits
        self.trips = self.commits = 0
        return taken


async def measure(settings: Settings, requests: int = 30) -> dict[str, Any]:
    """Acceptances without and with an Idempotency-Key (intake), a read of a complaint
    (intake) and an evidence item on an assigned complaint (investigation), each `requests`
    times after three that warm caches and prepared statements; the medians."""
    from bench.run import _intake
    from services.investigation.main import create_app as create_investigation_app

    intake, investigation = create_app(settings), create_investigation_app(settings)
    counter = Counter()
    now = datetime.now(UTC)

    def signed(role: str, **extra: str) -> dict[str, str]:
        token = mint_token(settings, f"{role}-trips", [role], timedelta(hours=1), now)
        return {"Authorization": f"Bearer {token}", **extra}

    found: dict[str, list[tuple[int, int]]] = {
        "accept": [],
        "accept_keyed": [],
        "read": [],
        "evidence": [],
    }

    async def counted(kind: str, n: int, send: Any, status: int) -> Any:
        counter.take()
        answer = await send()
        assert answer.status_code == status, answer.text
        if n >= 3:
            found[kind].append(counter.take())
        return answer

    async with (
        intake.router.lifespan_context(intake),
        investigation.router.lifespan_context(investigation),
    ):
        counter.sqlalchemy(intake.state.store.engine)
        counter.sqlalchemy(investigation.state.store.engine)
        clients = (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://trips")
            for app in (intake, investigation)
        )
        async with next(clients) as front, next(clients) as back:
            with counter.psycopg():
                ids = []
                for n in range(requests + 3):
                    body = _intake(f"trips-{n}")
                    answer = await counted(
                        "accept",
                        n,
                        lambda body=body: front.post(
                            "/complaints", json=body, headers=signed("agent")
                        ),
                        201,
                    )
                    ids.append(answer.json()["id"])
                for n in range(requests + 3):
                    body = _intake(f"trips-keyed-{n}")
                    keyed = signed("agent", **{"Idempotency-Key": f"trips-key-{n}"})
                    await counted(
                        "accept_keyed",
                        n,
                        lambda body=body, keyed=keyed: front.post(
                            "/complaints", json=body, headers=keyed
                        ),
                        201,
                    )
                for n, complaint_id in enumerate(ids):
                    await counted(
                        "read",
                        n,
                        lambda c=complaint_id: front.get(
                            f"/complaints/{c}", headers=signed("agent")
                        ),
                        200,
                    )
                    assigned = await back.post(
                        f"/complaints/{complaint_id}/assignment",
                        json={
                            "department": "network",
                            "investigator": "investigator-trips",
                            "complexity": "simple",
                        },
                        headers=signed("supervisor"),
                    )
                    assert assigned.status_code == 200, assigned.text
                    evidence = {"kind": "call_record", "ref": f"CDR-{n}", "summary": "checked"}
                    await counted(
                        "evidence",
                        n,
                        lambda c=complaint_id, evidence=evidence: back.post(
                            f"/complaints/{c}/evidence",
                            json=evidence,
                            headers=signed("investigator"),
                        ),
                        200,
                    )
    return {
        kind: {
            "round_trips": statistics.median(t for t, _ in rows),
            "commits": statistics.median(c for _, c in rows),
            "requests": len(rows),
        }
        for kind, rows in found.items()
        if rows
    }


def apart(admin: str) -> dict[str, Any]:
    """`measure` on a database of its own (`bench.own`): the requests leave events no
    projector has read, which a store seeded afterwards must not hold."""
    with own_database(admin, "complaints-trips-"):
        return asyncio.run(measure(quiet_settings()))


def main() -> None:
    """On a database of its own on the server at the URL given (default: the local one)."""
    from tests.postgres import postgres_server

    with postgres_server() as admin:
        print(json.dumps(apart(admin), indent=2))


if __name__ == "__main__":
    main()
