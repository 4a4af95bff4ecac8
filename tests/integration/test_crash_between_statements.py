"""Crash safety statement by statement: PostgreSQL crashes right after each statement a command
sends, in turn, and nothing is ever half-written.

A keyed command reaches PostgreSQL in several statements: the Idempotency-Key's claim and its
answer (SQLAlchemy on asyncpg), and the command's own reads and its one write (psycopg: the
reads that find what the key wrote already, the key binding read, the thread read, the append
of the events with the customer key and the binding, the NOTIFY). For each kind of command the
test first counts the statements one request sends; then, for each N, it sends another such
request and crashes the server (`pg_ctl stop -m immediate`, then start again) right after the
request's N-th statement returned. Before the request goes on, the database as the crash left
it must hold nothing half-written: no customer key nobody is bound to, no binding without its
complaint's events, no complaint's events without its binding, acceptance number and thread
entry, nor those without the complaint. The client then does what a frontend does: the same
request with the same key until it is answered (a claim the crash left running is taken over
once its lease has run out: the services' clock is moved on, nothing sleeps), and once more.
Afterwards:

- the key has written exactly one complaint (one event), and both answers name it;
- the complaint's personal data reads back (sealed with a key committed with it, not erased);
  a repeat complaint is linked to the one it repeats;
- still nothing is half-written, and each complaint's key and acceptance number are its own;
- the projections, caught up after every crash, equal a rebuild from the first event.

Statements are counted by wrapping the drivers' calls (psycopg's `Cursor.execute` and its
transactions' BEGIN and COMMIT/ROLLBACK; below SQLAlchemy, the asyncpg adapter's `execute`,
`commit` and `rollback`; a pool's pre-ping is not counted), and only in the armed request's
context (a context variable, which anyio carries into the store's worker threads): what
connection pools send on their own is not the command's. Each armed request must send the
counted statements in the same order up to the crash, so every crash lands where it is meant
to.

The cluster is a throwaway one from the local binaries, so crashing it harms nobody. It runs
with `fsync=off`: an immediate stop kills the server's processes, not the machine, so what
they wrote survives in the kernel as it would with fsync, and recovery takes a moment.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncAdapt_asyncpg_connection,
    AsyncAdapt_asyncpg_cursor,
)

from services.intake.main import create_app as create_intake_app
from services.investigation.main import create_app as create_investigation_app
from shared.audit.chain import ChainProjection
from shared.cli.rebuild import rebuild
from shared.domain.clock import FixedClock
from shared.domain.indexes import AcceptanceNumber
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.application import StoredEvent
from shared.store.facade import ComplaintStore
from tests.conftest import START, TokenFactory, create_schema, intake_body, make_settings
from tests.integration.conftest import Api, catch_up
from tests.postgres import Cluster, create_database, read_models

pytestmark = pytest.mark.postgres

#: Set in the context of the request whose statements are counted (and crashed after).
ARMED: ContextVar[bool] = ContextVar("armed", default=False)
#: How many times a client sends a request before the test gives up on it.
ATTEMPTS = 12
ASSIGN = {"department": "network-ops", "investigator": "inv-42", "complexity": "simple"}


class Crasher:
    """Counts the statements of the armed request; crashes the server right after the
    `crash_after`-th has returned, starts it again, and notes what the database then holds
    half-written (`found`) before the request goes on."""

    def __init__(self, cluster: Cluster, url: str) -> None:
        self.cluster = cluster
        self.url = url
        self.crash_after: int | None = None
        self.sent: list[str] = []
        self.found: list[str] | None = None
        self._lock = threading.Lock()

    @contextmanager
    def armed(self, crash_after: int | None) -> Iterator[list[str]]:
        """Count (and crash) within this block; yields the statements as they are sent."""
        self.crash_after, self.sent, self.found = crash_after, [], None
        token = ARMED.set(True)
        try:
            yield self.sent
        finally:
            ARMED.reset(token)
            self.crash_after = None

    def after(self, statement: str) -> None:
        if not ARMED.get():
            return
        with self._lock:
            self.sent.append(statement)
            if len(self.sent) == self.crash_after:
                self.cluster.crash()
                self.cluster.start()
                token = ARMED.set(False)  # the test's own look is not the request's
                try:
                    self.found = half_written(self.url)
                finally:
                    ARMED.reset(token)


def _text(query: Any, context: Any) -> str:
    text = query.as_string(context) if isinstance(query, sql.Composable) else str(query)
    return " ".join(text.split())[:70]


def _count_statements(monkeypatch: pytest.MonkeyPatch, crasher: Crasher) -> None:
    """Every statement either driver sends reports to `crasher` once it has returned."""
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
    enter, leave = psycopg.Transaction.__enter__, psycopg.Transaction.__exit__

    def cursor_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        result = execute(self, query, *args, **kwargs)
        crasher.after(f"psycopg {_text(query, self)}")
        return result

    def cursor_executemany(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        result = executemany(self, query, *args, **kwargs)
        crasher.after(f"psycopg many {_text(query, self)}")
        return result

    def transaction_enter(self: Any) -> Any:
        result = enter(self)
        crasher.after("psycopg BEGIN")
        return result

    def transaction_exit(self: Any, kind: Any, exc: Any, tb: Any) -> Any:
        result = leave(self, kind, exc, tb)
        crasher.after("psycopg ROLLBACK" if exc or self.force_rollback else "psycopg COMMIT")
        return result

    adapted_execute = AsyncAdapt_asyncpg_cursor.execute
    adapted_commit = AsyncAdapt_asyncpg_connection.commit
    adapted_rollback = AsyncAdapt_asyncpg_connection.rollback

    def asyncpg_execute(self: Any, operation: str, parameters: Any = None) -> Any:
        result = adapted_execute(self, operation, parameters)
        crasher.after(f"asyncpg {_text(operation, None)}")
        return result

    def asyncpg_commit(self: Any) -> None:
        began = self._transaction is not None
        adapted_commit(self)
        if began:
            crasher.after("asyncpg COMMIT")

    def asyncpg_rollback(self: Any) -> None:
        began = self._transaction is not None
        adapted_rollback(self)
        if began:
            crasher.after("asyncpg ROLLBACK")

    monkeypatch.setattr(psycopg.Cursor, "execute", cursor_execute)
    monkeypatch.setattr(psycopg.Cursor, "executemany", cursor_executemany)
    monkeypatch.setattr(psycopg.Transaction, "__enter__", transaction_enter)
    monkeypatch.setattr(psycopg.Transaction, "__exit__", transaction_exit)
    monkeypatch.setattr(AsyncAdapt_asyncpg_cursor, "execute", asyncpg_execute)
    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "commit", asyncpg_commit)
    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "rollback", asyncpg_rollback)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster("fsync=off")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


@dataclass
class Services:
    intake: Api
    investigation: Api
    #: The intake app's store (the test reads through it), then the investigation app's.
    stores: tuple[ComplaintStore, ComplaintStore]
    settings: Settings
    clock: FixedClock
    url: str
    #: Answers that were not the answer (status codes), as the clients saw them.
    refused: Counter[int] = field(default_factory=Counter)

    @property
    def store(self) -> ComplaintStore:
        return self.stores[0]

    def drop_dead_connections(self) -> None:
        """The services' connection pools drop the connections the crash broke (each would
        fail a request, then go) for new ones: the next armed request starts as the counted
        one did."""
        for store in self.stores:
            getattr(store.app.recorder, "datastore").pool.drain()  # noqa: B009
            # Our own tables' pool too (no ping before use either): a fresh one, nothing
            # closed (the old connections are dead already).
            store.engine.sync_engine.dispose(close=False)


@asynccontextmanager
async def _client(app: Any, token: TokenFactory) -> AsyncIterator[Api]:
    """A signed client on the app, its lifespan running; a failure on the server side is
    answered 500 (as a real server does), not raised into the test."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, token)


@pytest.fixture
async def services(cluster: Cluster, token: TokenFactory) -> AsyncIterator[Services]:
    """Intake and investigation on a store in the throwaway cluster; nothing runs in the
    background (the test catches the projections up itself)."""
    url = create_database(cluster.url)
    settings = make_settings(
        url,
        projector_enabled=False,
        dispatcher_enabled=False,
        deadline_watch_enabled=False,
        rate_limit_per_second=0,
        # Two connections per pool: each one a crash breaks costs the next statements on it
        # a failure and a retry (the library waits 0.2 s before each).
        store_threads=2,
    )
    await create_schema(settings)
    clock = FixedClock(START)
    intake_app = create_intake_app(settings, clock=clock)
    investigation_app = create_investigation_app(settings, clock=clock)
    async with (
        _client(intake_app, token) as intake,
        _client(investigation_app, token) as investigation,
    ):
        stores = (intake_app.state.store, investigation_app.state.store)
        yield Services(intake, investigation, stores, settings, clock, url)


@dataclass(frozen=True)
class Request:
    """One keyed request, as a frontend sends it again until it is answered."""

    api: Api
    path: str
    body: dict[str, Any]
    role: str
    sub: str
    key: str
    ok: int

    async def send(self) -> httpx.Response:
        headers = self.api.headers(self.role, self.sub, **{"Idempotency-Key": self.key})
        return await self.api.client.post(self.path, json=self.body, headers=headers)


async def _until_answered(request: Request, services: Services) -> httpx.Response:
    """Send until answered; a claim still running (its request crashed) is taken over once its
    lease has run out: the clock is moved past it."""
    for _ in range(ATTEMPTS):
        answer = await request.send()
        if answer.status_code == request.ok:
            return answer
        services.refused[answer.status_code] += 1
        if answer.status_code == 409 and "idempotency" in answer.json().get("type", ""):
            services.clock.advance(timedelta(seconds=services.settings.idempotency_lease_seconds))
            continue
        assert answer.status_code >= 500, (request.path, answer.status_code, answer.text)
    raise AssertionError(f"{request.path} was not answered in {ATTEMPTS} attempts")


# ------------------------------------------------------------------------------ the commands
@dataclass(frozen=True)
class Prepared:
    request: Request
    #: The complaint the request acts on (None: it creates one).
    complaint_id: str | None = None
    #: The complaint a new one must repeat (same customer, number and category).
    repeats: str | None = None
    #: Personal data the complaint must read back: (field path in the view, value).
    reads: tuple[tuple[tuple[str, ...], str], ...] = ()


def _intake(customer: str, n: int) -> dict[str, Any]:
    return intake_body(
        customer={"id": customer, "name": f"姓名 {customer}", "phone": "13900000000"},
        service_number=f"1390000{n:04d}",
        description=f"没有信号 {customer} {n}",
    )


def _acceptance(services: Services, body: dict[str, Any], key: str) -> Request:
    """An agent's keyed acceptance at intake."""
    return Request(services.intake, "/complaints", body, "agent", "agent-1", key, 201)


async def new_customer(services: Services, n: int) -> Prepared:
    """An acceptance for a customer never seen: a new key and binding come with it."""
    customer = f"new-{n}"
    body = _intake(customer, n)
    request = _acceptance(services, body, customer)
    return Prepared(
        request,
        reads=((("customer", "name"), f"姓名 {customer}"), (("description",), body["description"])),
    )


async def known_customer(services: Services, n: int) -> Prepared:
    """A customer's second complaint about the same number: their key, their thread."""
    customer = f"known-{n}"
    first = _acceptance(services, _intake(customer, n), f"{customer}-a")
    earlier = (await _until_answered(first, services)).json()["id"]
    body = {**_intake(customer, n), "description": f"还是没有信号 {customer}"}
    request = _acceptance(services, body, customer)
    return Prepared(
        request,
        repeats=earlier,
        reads=((("customer", "name"), f"姓名 {customer}"), (("description",), body["description"])),
    )


async def evidence(services: Services, n: int) -> Prepared:
    """Evidence on an assigned complaint: personal data sealed with the customer's key."""
    customer = f"evidence-{n}"
    accept = _acceptance(services, _intake(customer, n), f"{customer}-a")
    complaint_id = (await _until_answered(accept, services)).json()["id"]
    path = f"/complaints/{complaint_id}"
    assign = Request(
        services.investigation,
        f"{path}/assignment",
        ASSIGN,
        "supervisor",
        "sup-1",
        f"{customer}-b",
        200,
    )
    await _until_answered(assign, services)
    summary = f"基站告警 {n} 次"
    body = {"kind": "system_log", "ref": f"ALARM-{n}", "summary": summary}
    request = Request(
        services.investigation, f"{path}/evidence", body, "investigator", "inv-42", customer, 200
    )
    return Prepared(request, complaint_id, reads=((("evidence", "-1", "summary"), summary),))


COMMANDS: dict[str, Callable[[Services, int], Awaitable[Prepared]]] = {
    "acceptance of a new customer": new_customer,
    "acceptance of a known customer": known_customer,
    "evidence": evidence,
}


# ------------------------------------------------------------------------------ the checks
#: The complaint an index aggregate's event names (its stored JSON: `{"_data_": <hex>}`).
NAMED = "(convert_from(state, 'UTF8')::jsonb #>> '{complaint_id,_data_}')::uuid"


def half_written(url: str) -> list[str]:
    """What the database holds of a command without the rest: customer keys nobody is bound
    to, bindings without their complaint's events, a complaint's events without its binding,
    its acceptance number or its thread entry, or those without the complaint. Read with SQL
    alone, so it can be asked at any moment (right after a crash)."""

    with psycopg.connect(url) as conn:

        def ids(query: str) -> Counter[str]:
            return Counter(str(row[0]) for row in conn.execute(query.encode()).fetchall())

        accepted = ids(
            "SELECT originator_id FROM complaints_events WHERE topic LIKE '%:Complaint.Accepted'"
        )
        complaints = ids(
            "SELECT DISTINCT originator_id FROM complaints_events WHERE topic LIKE '%:Complaint.%'"
        )
        numbered = ids(
            f"SELECT {NAMED} FROM complaints_events WHERE topic LIKE '%:AcceptanceNumber.%'"
        )
        threaded = ids(
            f"SELECT {NAMED} FROM complaints_events WHERE topic LIKE '%:ComplaintThread.%'"
        )
        bound = ids("SELECT complaint_id FROM customer_complaints")
        keys = ids("SELECT key_id FROM wrapped_keys")
        keys_bound = ids("SELECT DISTINCT key_id FROM customer_complaints")
    expected = Counter(set(accepted))
    problems = {
        "a complaint accepted twice": accepted != expected,
        "events of a complaint never accepted": complaints != expected,
        "a binding without its complaint, or the reverse": bound != expected,
        "an acceptance number without its complaint, or the reverse": numbered != expected,
        "a thread entry without its complaint, or the reverse": threaded != expected,
        "a customer key nobody is bound to, or a binding to no key": keys != keys_bound,
    }
    return [problem for problem, found in problems.items() if found]


async def _events(store: ComplaintStore) -> list[StoredEvent]:
    return await store.read(0, 100_000)


def _keyed(events: list[StoredEvent], request: Request) -> list[StoredEvent]:
    """The complaints' events written with this client's key."""
    return [
        e
        for e in events
        if e.aggregate == "Complaint"
        and e.ctx.get("idempotency_key") == request.key
        and (e.ctx.get("actor") or {}).get("id") == request.sub
    ]


def _nothing_half_written(url: str, events: list[StoredEvent]) -> None:
    """As `half_written`, and each complaint's acceptance number and key are its own."""
    assert half_written(url) == []
    with psycopg.connect(url) as conn:
        keys: dict[str, str] = dict(
            conn.execute("SELECT key_id, customer_id FROM wrapped_keys").fetchall()
        )
        bound = {
            complaint: (customer, key)
            for complaint, customer, key in conn.execute(
                "SELECT complaint_id, customer_id, key_id FROM customer_complaints"
            ).fetchall()
        }
    numbers = {
        e.aggregate_id: str(e.complaint_id) for e in events if e.aggregate == "AcceptanceNumber"
    }
    for event in events:
        if event.aggregate == "Complaint" and event.type == "Accepted":
            complaint_id = str(event.aggregate_id)
            customer = event.data["intake"]["customer"]["id"]
            assert bound[complaint_id][0] == keys[bound[complaint_id][1]] == customer
            assert numbers[AcceptanceNumber.id_for(event.data["acceptance_no"])] == complaint_id


def _dig(view: Any, path: tuple[str, ...]) -> Any:
    for step in path:
        view = view[int(step)] if isinstance(view, list) else view[step]
    return view


async def _trial(
    services: Services, crasher: Crasher, command: str, n: int, crash_after: int | None
) -> list[str]:
    """Prepare one request of the kind, send it armed (crashing after the `crash_after`-th
    statement), send it again until it is answered, and check what it left. The statements it
    sent while armed."""
    prepared = await COMMANDS[command](services, n)
    request = prepared.request
    with crasher.armed(crash_after) as sent:
        first = await request.send()
    if crash_after is None:
        assert first.status_code == request.ok, first.text
    else:
        assert crasher.found == [], f"after statement {crash_after} ({sent}): {crasher.found}"
    answer = await _until_answered(request, services)
    services.drop_dead_connections()
    again = await _until_answered(request, services)  # once more: the same answer, nothing new
    complaint_id = prepared.complaint_id or answer.json()["id"]
    assert again.json()["id"] == complaint_id
    assert again.json()["version"] == answer.json()["version"]

    events = await _events(services.store)
    keyed = _keyed(events, request)
    assert len(keyed) == 1, f"{len(keyed)} events for one key"
    assert str(keyed[0].aggregate_id) == complaint_id
    shown = (await services.intake.get(f"/complaints/{complaint_id}")).json()
    for path, value in prepared.reads:
        assert _dig(shown, path) == value, (path, shown)
    assert shown["personal_data_erased_at"] is None
    assert shown["repeat_of"] == prepared.repeats
    _nothing_half_written(services.url, events)
    services.drop_dead_connections()  # the test's own catch-up meets no dead connection
    await catch_up(services.store, SummaryProjection(services.store), ChainProjection())
    return sent


@pytest.mark.parametrize("command", list(COMMANDS))
async def test_a_crash_after_any_statement_of_a_command_leaves_nothing_half_written(
    services: Services, cluster: Cluster, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    crasher = Crasher(cluster, services.url)
    _count_statements(monkeypatch, crasher)
    await _trial(services, crasher, command, 0, None)  # the pools' first connections
    statements = await _trial(services, crasher, command, 1, None)
    print(f"{command}: {len(statements)} statements", *statements, sep="\n  ")
    assert len(statements) >= 4, statements  # claim, append, answer at the very least
    for crash_after in range(1, len(statements) + 1):
        sent = await _trial(services, crasher, command, 1 + crash_after, crash_after)
        assert sent[:crash_after] == statements[:crash_after], (crash_after, sent)

    print(f"{command}: answers on the way (status: count) {dict(services.refused)}")
    projected = read_models(services.url)
    assert len(projected["complaint_summaries"]) == len(await _accepted(services.store))
    await rebuild(services.settings, [], progress=False)
    assert read_models(services.url) == projected


async def _accepted(store: ComplaintStore) -> set[UUID]:
    return {e.aggregate_id for e in await _events(store) if e.type == "Accepted"}
