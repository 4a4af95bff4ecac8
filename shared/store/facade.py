"""The async facade every service awaits. The only door to the event store.

`eventsourcing` is synchronous, so each call runs in a worker thread, bounded by a capacity
limiter that matches the PostgreSQL pool (no thread ever waits for a connection). Commands on
one complaint are serialised within the process, so racing requests mostly queue instead of
burning retries; races between processes are settled by the store's optimistic concurrency.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

import anyio
from anyio import to_thread
from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.domain.clock import Clock, system_clock
from shared.domain.complaint import Complaint
from shared.domain.context import CommandContext
from shared.domain.indexes import MajorIncident
from shared.domain.policy import Policy
from shared.metrics import Metrics
from shared.settings import Settings
from shared.store import kek_holders
from shared.store.application import (
    ComplaintsApplication,
    Erasure,
    StoredEvent,
    store_threads,
)
from shared.store.engine import create_engine
from shared.store.idempotency import IdempotencyStore, StoredAnswer
from shared.store.keystore import (
    KEY_TABLE,
    Kek,
    KekFile,
    KekNotHeld,
    checkpoint,
    destroyable,
    vacuum,
)
from shared.store.tables import idempotency_keys

T = TypeVar("T")

#: Brings our own tables to the newest schema (`shared.readmodel.migrate.upgrade`, handed in by
#: the setup step): whether it wrapped plaintext customer keys, which must then be scrubbed.
Migrate = Callable[[AsyncEngine, Kek], Awaitable[bool]]


#: What the event store raises when its connection to the database is lost or refused.
CONNECTION_LOST: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


class StoreNotOpen(RuntimeError):
    """The store has not been opened (yet: the database could not be reached at start), or
    has been closed."""


def not_reachable_yet(exc: BaseException) -> bool:
    """Whether opening the store failed for want of the database: it cannot be reached, does
    not exist yet, or has not been set up yet (its tables missing). Worth trying again; any
    other failure (a KEK not at hand, a key file missing) is not."""
    return isinstance(exc, (PersistenceError, DBAPIError, ConnectionError, TimeoutError))


#: How far up a customer's thread of repeats a refusal looks for an answered complaint.
MAX_THREAD_WALK = 50


@dataclass(frozen=True)
class Written:
    complaint: Complaint
    #: Global position of the last event written; None when nothing new was written.
    position: int | None
    #: The Idempotency-Key answer was stored with the write (`ComplaintStore.accept`).
    answered: bool = False


def consume(future: asyncio.Future[Any]) -> None:
    """A future nobody waits for any more still has its outcome read (no "never retrieved");
    pass it to `add_done_callback`."""
    if not future.cancelled():
        future.exception()


def held_by(kek: Kek, holders: list[kek_holders.Holder], *, none_running: bool) -> None:
    """Refuse (KekNotHeld) to put `kek` in force unless every running process holds it and,
    unless `none_running`, at least one has said so."""
    if not holders and not none_running:
        raise KekNotHeld(
            f"KEK {kek.id} is staged, but no running service process has reported the KEKs it "
            f"holds in the last {kek_holders.ALIVE_SECONDS:.0f} s, so none can be said to hold "
            "it; nothing was changed. Start the services (they report every "
            f"{kek_holders.REPORT_SECONDS:.0f} s), or if none runs on purpose, `python -m "
            "shared.cli.kek rotate --none-running`"
        )
    if lacking := [h for h in holders if kek.id not in h.kek_ids]:
        raise KekNotHeld(
            f"KEK {kek.id} is staged, but {len(lacking)} running process(es) do not hold it "
            "yet: "
            + ", ".join(f"{h.holder} (last heard {h.seen_at:%H:%M:%S}Z)" for h in lacking)
            + ". Their KEK file has not been updated yet (a Kubernetes Secret reaches the pods "
            "within a minute or two); nothing was changed: run the rotation again once it has"
        )


def one_file(holders: list[kek_holders.Holder]) -> None:
    """Refuse (KekNotHeld) a new KEK put in force at once while the running processes are on
    more than one host: each may read its own copy of the KEK file (a Kubernetes pod does)."""
    hosts = sorted({h.holder.split(":", 1)[0] for h in holders})
    if len(hosts) > 1:
        raise KekNotHeld(
            f"service processes run on {len(hosts)} hosts ({', '.join(hosts)}), each perhaps "
            "with its own copy of the KEK file: a KEK put in force at once would wrap keys "
            "that the others cannot open. Stage it first (`python -m shared.cli.kek stage`, "
            "give every host the file, then `rotate`), or, if every host reads this very "
            "file, `rotate --shared-file`; nothing was changed"
        )


class ComplaintStore:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = system_clock,
        policy: Policy | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.policy = policy or Policy.load(settings.policy_path)
        self.policy.check_in_force()
        #: A token per call into the store, held until its worker thread has finished (not
        #: until its caller stops waiting): see `_run`.
        self._limiter = anyio.CapacityLimiter(store_threads(settings))
        #: The token of the probe of `ping(within=...)`, which runs beside the calls.
        self._beside = anyio.CapacityLimiter(1)
        #: The threads themselves; never short of tokens (the two above admit calls first).
        self._threads = anyio.CapacityLimiter(store_threads(settings) + 1)
        self._probe: asyncio.Future[int] | None = None
        self._locks: weakref.WeakValueDictionary[UUID, asyncio.Lock] = weakref.WeakValueDictionary()
        self._app: ComplaintsApplication | None = None
        self._engine = create_engine(settings)
        self.idempotency = IdempotencyStore(self._engine, clock, settings.idempotency_lease_seconds)
        #: The process's metrics (`shared.metrics`): whatever holds the store counts on them.
        self.metrics = Metrics()

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        """Open the store; refuses to if a customer key is wrapped by a KEK not at hand."""
        keks = await self._run(partial(KekFile.load, self.settings.kek_path, create=False))
        app = await self._run(
            partial(ComplaintsApplication, self.settings, self.policy, keks, create_table=False)
        )
        try:
            await self._run(app.keystore.check)
        except Exception:
            await self._run(app.close)
            raise
        app.appended = self.metrics.appended  # counted once committed
        self._app = app

    async def close(self) -> None:
        app = self._app
        if app is not None:
            # Every call still running in a worker thread finishes first, one whose caller
            # was cancelled (a request gone, a projector or watch stopped) included: closing
            # the library's SQLite connections under a query crashes the process. A call
            # holds its token until its thread ends (`_run`), so taking every token (the
            # probe's too) waits for all of them; no call starts meanwhile, nor after (they
            # find the store closed).
            self._app = None
            borrowers: list[tuple[anyio.CapacityLimiter, object]] = []
            closing = False
            try:
                for limiter in (self._limiter, self._beside):
                    for _ in range(int(limiter.total_tokens)):
                        borrower = object()
                        await limiter.acquire_on_behalf_of(borrower)
                        borrowers.append((limiter, borrower))
                closing = True
                await to_thread.run_sync(app.close)
            except BaseException:
                if not closing:  # cancelled while waiting: still open, to be closed again
                    self._app = app
                raise
            finally:
                for limiter, borrower in borrowers:
                    limiter.release_on_behalf_of(borrower)
        await self._engine.dispose()

    async def create_schema(self, migrate: Migrate) -> None:
        """Create the event tables, and our own tables by `migrate`, once (the setup step, not
        at start-up). Customer keys a store from before the key store held in plaintext are
        wrapped under the current KEK, and the database scrubbed of them."""
        keks = await self._run(partial(KekFile.load, self.settings.kek_path, create=False))
        app = await self._run(
            partial(ComplaintsApplication, self.settings, self.policy, keks, create_table=True)
        )
        await self._run(app.close)
        moved_plaintext_keys = await migrate(self._engine, keks.current)
        if self.settings.is_postgres:
            # Rows an upgrade rewrote (plaintext keys wrapped, stored answers stripped of
            # personal data) must not live on as dead row versions.
            await self._run(partial(vacuum, self.settings, KEY_TABLE, idempotency_keys.name))
        else:  # and nothing of them in the WAL (VACUUM, which drops free pages, if keys moved)
            await self._engine.dispose()  # VACUUM needs the file to itself
            await self._run(partial(checkpoint, self.settings, vacuum=moved_plaintext_keys))

    # ------------------------------------------------------------------- commands
    async def accept(
        self,
        intake: dict[str, Any],
        ctx: CommandContext,
        then: Callable[[Complaint], None] | None = None,
        answer: Callable[[Complaint], StoredAnswer] | None = None,
    ) -> Written:
        """Accept a complaint; `then` may add commands saved atomically with the acceptance,
        `answer` gives its Idempotency-Key answer, stored with it (`StoredAnswer`)."""
        complaint, position = await self._run(partial(self.app.accept, intake, ctx, then, answer))
        return Written(complaint, position, answered=answer is not None and position is not None)

    async def execute(
        self,
        complaint_id: UUID,
        command: Callable[[Complaint], None],
        *,
        ctx: CommandContext,
        expected_version: int | None = None,
    ) -> Written:
        """Load the complaint, run `command` on it, save the events it triggered."""
        lock = self._locks.setdefault(complaint_id, asyncio.Lock())
        async with lock:
            complaint, position = await self._run(
                partial(
                    self.app.execute,
                    complaint_id,
                    command,
                    expected_version=expected_version,
                    ctx=ctx,
                )
            )
        return Written(complaint, position)

    async def gather_incident(
        self, category: str, area: str, candidates: list[UUID], ctx: CommandContext
    ) -> MajorIncident | None:
        """Let the candidates (complaints of that category and area in no incident yet) join
        its major incident, or declare one; the incident if it was declared or grew."""
        return await self._run(partial(self.app.gather_incident, category, area, candidates, ctx))

    async def erase_customer(self, customer_id: str, ctx: CommandContext) -> Erasure:
        """Erase the customer's personal data everywhere: destroy their key, record the erasure
        on each of their complaints, forget the stored answers that held it, then scrub what
        the database keeps of deleted rows (every time: a retry after a crash finishes it)."""
        erasure = await self._run(partial(self.app.erase_customer, customer_id, ctx))
        await self.idempotency.forget_complaints(erasure.complaints)
        await self._run(self.app.keys.scrub)
        return erasure

    # ------------------------------------------------------------------ KEKs
    async def current_kek_id(self) -> str:
        return await self._run(lambda: self.app.keystore.keks.current.id)

    async def seal_secret(self, plain: bytes, purpose: str) -> tuple[str, bytes]:
        """A secret of ours other than a customer key (a webhook's signing secret) sealed under
        the current KEK, bound to `purpose`: (the KEK's id, the sealed bytes)."""
        kek = await self._run(lambda: self.app.keystore.keks.current)
        return kek.id, kek.seal(plain, purpose)

    async def unseal_secret(self, kek_id: str, sealed: bytes, purpose: str) -> bytes:
        """What `seal_secret` sealed; KekMissing if that KEK was destroyed meanwhile."""
        kek = await self._run(partial(self.app.keystore.keks.get, kek_id))
        return kek.unseal(sealed, purpose)

    async def stage_kek(self) -> tuple[Kek, bool]:
        """Stage a new KEK in the KEK file: held, wrapping nothing until `rotate_kek` puts it in
        force. The staged KEK, and whether it is new (one staged before is kept)."""
        return await self._run(partial(self.app.keystore.keks.stage, self.clock()))

    async def rotate_kek(
        self, *, none_running: bool = False, shared_file: bool = False
    ) -> tuple[Kek, int, bool]:
        """Re-wrap every customer key under a new KEK; the old one is kept for the retention.
        A rotation that stopped half-way (keys still wrapped by an older KEK) is finished
        instead of starting another. A staged KEK (`stage_kek`) is the new one, and it is put
        in force only once every running process holds it, and at least one has said so
        (`none_running`: no service runs, on purpose): KekNotHeld otherwise, and nothing
        changes. Without a staged KEK, a new one is put in force at once, which is refused
        while processes run on more than one host (each may have its own copy of the file)
        unless `shared_file` says they all read this one. The KEK, how many keys were
        re-wrapped, and whether it was a rotation finished."""
        staged, behind = await self._run(self._rotation)
        if staged is not None:
            held_by(staged, await kek_holders.alive(self._engine), none_running=none_running)
        elif not behind and not shared_file:  # a new KEK, in force at once
            one_file(await kek_holders.alive(self._engine))
        return await self._run(partial(self._rotate_kek, staged))

    def _rotation(self) -> tuple[Kek | None, set[str]]:
        """What a rotation does now: the staged KEK to put in force, and the KEKs other than
        the one in force that still wrap live keys. The staged KEK is put in force unless keys
        wrapped by an older one are to be re-wrapped first (a rotation to the KEK in force
        that stopped half-way). Keys wrapped by the staged KEK itself mean a rotation to it
        that stopped before the KEK file was kept (a Secret not written back): putting it in
        force finishes that one. Neither, and nothing behind: a new KEK is added."""
        store = self.app.keystore
        keks = store.keks
        staged = keks.staged
        behind = store.kek_ids() - {keks.current.id}
        return (staged if staged is not None and behind <= {staged.id} else None), behind

    def _rotate_kek(self, staged: Kek | None) -> tuple[Kek, int, bool]:
        store = self.app.keystore
        keks = store.keks
        with keks.locked():  # the whole rotation: no other rotation or purge interleaves
            still, behind = self._rotation()  # again, under the lock
            if staged is not None and still == staged:
                kek = keks.promote(self.clock(), staged.id)
            elif behind:
                kek = keks.current
            elif keks.staged is not None:
                raise KekNotHeld("a KEK was staged while the rotation began: run it again")
            else:
                kek = keks.add(self.clock())
            return kek, store.rewrap(kek), bool(behind)

    async def report_keks(self, holder: str) -> None:
        """Record which KEKs this process holds, its KEK file read again first."""
        keks = self.app.keystore.keks
        held, in_force = await self._run(lambda: ([k.id for k in keks.keks], keks.current.id))
        await kek_holders.report(self._engine, holder, held, in_force)

    async def keep_reporting_keks(self, holder: str) -> None:
        """Report the KEKs this process holds until cancelled (shared.store.kek_holders). A
        process that stops leaves its row, which stops counting `ALIVE_SECONDS` later: taking
        it away on the way out would be one more write at shutdown, which on SQLite waits out
        the busy timeout behind a projector stopped mid-batch."""
        await kek_holders.keep_reporting(partial(self.report_keks, holder))

    async def purge_keks(self) -> list[Kek]:
        """Destroy the KEKs superseded more than the retention ago; keys still wrapped by an
        older KEK (by a process that had not seen a rotation yet) are re-wrapped first, so
        none is lost, and a KEK that a running process still has in force (its copy of the
        file not updated yet) is kept. Returns the KEKs destroyed."""
        in_force = {h.in_force for h in await kek_holders.alive(self._engine)}
        return await self._run(partial(self._purge_keks, in_force))

    def _purge_keks(self, in_force_elsewhere: set[str]) -> list[Kek]:
        store = self.app.keystore
        keks = store.keks
        retention = timedelta(days=self.settings.kek_retention_days)
        with keks.locked():  # the whole purge: no rotation interleaves
            store.rewrap(keks.current)
            kept = store.kek_ids() | in_force_elsewhere
            gone = destroyable(keks, kept, self.clock(), retention)
            if gone:
                keks.remove(k.id for k in gone)
        return gone

    # ---------------------------------------------------------------------- reads
    async def get(self, complaint_id: UUID, *, as_of: datetime | None = None) -> Complaint:
        """The complaint rebuilt from its events (as of a time), its personal data sealed
        (`shared.domain.personal.Sealed`): what shows it opens it."""
        if as_of is None:
            return await self._run(partial(self.app.load, complaint_id))
        return await self._run(partial(self.app.load_as_of, complaint_id, as_of))

    async def earlier_of(self, complaint_id: UUID) -> Complaint | None:
        """The earlier complaint this one repeats: the nearest up its thread that the customer
        was answered on, else the one it repeats directly (None if it repeats none)."""
        complaint = await self.get(complaint_id)
        nearest = None
        for _ in range(MAX_THREAD_WALK):
            if not complaint.repeat_of:
                break
            complaint = await self.get(UUID(complaint.repeat_of))
            nearest = nearest or complaint
            if complaint.concluded:
                return complaint
        return nearest

    async def find_by_acceptance_no(self, acceptance_no: str) -> Complaint:
        return await self._run(partial(self.app.find_by_acceptance_no, acceptance_no))

    async def history(self, complaint_id: UUID) -> list[StoredEvent]:
        return await self._run(partial(self.app.history, complaint_id))

    async def read(
        self, after: int, limit: int, stop: int | None = None, *, sealed: bool = False
    ) -> list[StoredEvent]:
        """Up to `limit` events after global position `after` (and up to `stop`), in order;
        with `sealed`, each complaint's event also as an aggregate folds it
        (`StoredEvent.sealed`: its personal data sealed, as `get` gives it)."""
        return await self._run(partial(self.app.read, after, limit, stop, sealed=sealed))

    async def load_versions(self, wanted: dict[UUID, int]) -> list[Complaint]:
        """Each complaint as of the given version, in one trip to a worker thread."""
        return await self._run(partial(self.app.load_many, wanted))

    async def get_incident(self, incident_id: UUID) -> MajorIncident:
        """A major incident rebuilt from its events."""
        return await self._run(partial(self.app.load_incident, incident_id))

    async def load_incidents(self, wanted: dict[UUID, int]) -> list[MajorIncident]:
        """Each major incident as of the given version, in one trip to a worker thread."""
        return await self._run(partial(self.app.load_incidents, wanted))

    async def event_at(self, complaint_id: UUID, version: int) -> StoredEvent:
        """One event of a complaint."""
        return await self._run(partial(self.app.event_at, complaint_id, version))

    async def ping(self, within: float | None = None) -> int:
        """The last global position; raises if the store cannot be reached (TimeoutError if
        it does not answer `within` that many seconds).

        With a time limit there is one probe at a time, beside the command threads: while the
        database is down the library keeps retrying for about a minute, so callers that give up
        share the probe still running rather than each leaving a thread behind.
        """
        if within is None:
            return await self._run(self.app.ping)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(self._run(self.app.ping, self._beside))
            self._probe.add_done_callback(consume)
        async with asyncio.timeout(within):
            return await asyncio.shield(self._probe)

    # -------------------------------------------------------------------- helpers
    @property
    def calls_in_flight(self) -> int:
        """Calls into the store holding a worker thread's token now (the metrics show it)."""
        return int(self._limiter.borrowed_tokens)

    @property
    def engine(self) -> AsyncEngine:
        """The SQL engine of our own tables (read models, audit chain), same database."""
        return self._engine

    @property
    def app(self) -> ComplaintsApplication:
        if self._app is None:
            raise StoreNotOpen("ComplaintStore is not open (open() not awaited, or closed)")
        return self._app

    async def _run(self, func: Callable[[], T], limiter: anyio.CapacityLimiter | None = None) -> T:
        """Run `func` in a worker thread, holding a token of `limiter` (the calls' by default)
        until the thread is done. A caller cancelled meanwhile stops waiting, but the token is
        not given back before the thread ends (anyio's limiter gives it back at once when its
        task is cancelled): `close` relies on that not to close connections under a query."""
        tokens = limiter or self._limiter
        timer = self.metrics.store_latency.labels(_operation(func))
        app = self._app
        if app is not None:  # keys read during one call are remembered for that call
            func = partial(app.keys.run, func)
        borrower = object()
        await tokens.acquire_on_behalf_of(borrower)
        started = time.perf_counter()
        if self._app is not app:  # closed while this call waited for its turn
            tokens.release_on_behalf_of(borrower)
            raise RuntimeError("ComplaintStore was closed")
        try:
            call = asyncio.ensure_future(to_thread.run_sync(func, limiter=self._threads))
        except BaseException:
            tokens.release_on_behalf_of(borrower)
            raise

        def done(future: asyncio.Future[T]) -> None:
            tokens.release_on_behalf_of(borrower)
            timer.observe(time.perf_counter() - started)
            consume(future)

        call.add_done_callback(done)
        return await asyncio.shield(call)


def _operation(func: Callable[[], Any]) -> str:
    """The name of the store's method a call runs (a label: from the code, never data)."""
    while isinstance(func, partial):
        func = func.func
    name = getattr(func, "__name__", "")
    return name if name.isidentifier() else "other"
