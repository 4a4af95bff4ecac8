"""The one event-sourced application all four services share (synchronous; see `facade`).

Its `name` fixes the table names on PostgreSQL (`complaints_events`, …), so every service
writes one table with one total order. Only this package knows which persistence is below.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4, uuid5

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Mapper, Recording
from eventsourcing.utils import Environment, EnvType
from stdnum import luhn
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from shared.audit.verify import digest
from shared.domain.complaint import Complaint
from shared.domain.context import CommandContext
from shared.domain.errors import (
    ComplaintNotFound,
    ConcurrentModification,
    IdempotencyKeyReused,
    IncidentNotFound,
    VersionMismatch,
)
from shared.domain.indexes import (
    NAMESPACE,
    AcceptanceNumber,
    ComplaintThread,
    IncidentSeries,
    MajorIncident,
)
from shared.domain.personal import EVENT_FIELDS, is_plaintext, leaves
from shared.domain.policy import Policy
from shared.settings import Settings
from shared.store.idempotency import StoredAnswer
from shared.store.keystore import KekFile, SqlKeyStore
from shared.store.sealing import KeyRing, SealingMapper
from shared.store.snapshots import CurrentSnapshots

#: Fields of the stored domain event that are not the event's own data.
ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


def store_env(settings: Settings, *, create_table: bool) -> dict[str, str]:
    """The `eventsourcing` environment for the configured database."""
    url = settings.url
    env = {"CREATE_TABLE": "y" if create_table else "n"}
    if settings.is_postgres:
        env |= {
            "PERSISTENCE_MODULE": "shared.store.postgres:OrderedPostgresFactory",
            "POSTGRES_DBNAME": url.database or "postgres",
            "POSTGRES_HOST": url.host or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_PASSWORD": url.password or "",
            # Every store thread can hold a connection; no thread waits on the pool, and a
            # starved or unreachable server fails fast instead of hanging for minutes.
            # Connections open on demand up to the thread limit (four services must fit in
            # PostgreSQL's default max_connections).
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": str(max(settings.store_threads - 2, 0)),
            "POSTGRES_CONNECT_TIMEOUT": "5",
            # No ping before each use: a connection found dead fails its statement, which is
            # retried on a fresh one (shared.store.postgres; the key store's calls likewise).
            "POSTGRES_PRE_PING": "n",
            "POSTGRES_LOCK_TIMEOUT": "10",
        }
    else:
        env |= {
            "PERSISTENCE_MODULE": "shared.store.sqlite:DurableSQLiteFactory",
            "SQLITE_DBNAME": url.database or ":memory:",
            "SQLITE_LOCK_TIMEOUT": "10",
        }
    return env


#: eventsourcing's SQLite pool holds at most 15 connections (5 + 10 overflow), not settable.
SQLITE_POOL_LIMIT = 15


def store_threads(settings: Settings) -> int:
    """How many threads may use the store at once without ever waiting for a connection."""
    if settings.is_postgres:
        return settings.store_threads  # the PostgreSQL pool is sized to match (store_env)
    return min(settings.store_threads, SQLITE_POOL_LIMIT)


def new_acceptance_no(day: datetime) -> str:
    """YYMMDD-NNNNNN-C: a date, six random digits and a Luhn check digit, easy to read out."""
    digits = f"{day:%y%m%d}{secrets.randbelow(1_000_000):06d}"
    return f"{digits[:6]}-{digits[6:]}-{luhn.calc_check_digit(digits)}"


@dataclass(frozen=True)
class StoredEvent:
    """A stored event, decoded: what reads, projections and the audit export work from."""

    version: int
    type: str
    at: datetime
    ctx: dict[str, Any]
    data: dict[str, Any]
    aggregate_id: UUID
    #: The aggregate class: Complaint, or one of the index aggregates (shared.domain.indexes).
    aggregate: str = "Complaint"
    #: Place in the store's global order (None where the read did not ask for it).
    position: int | None = None
    #: The salt of the customer's key, when the event holds personal data in plaintext (the
    #: audit chain commits to salted digests of it); None once erased.
    salt: str | None = None
    #: Its ctx and data as stored, where an upcast (`shared.domain.upcasts`) changed their
    #: shape; None where they are `ctx` and `data` already.
    as_stored: tuple[dict[str, Any], dict[str, Any]] | None = None
    #: A complaint's event as an aggregate is built from it (personal data left sealed, or
    #: erased), for a projection to fold onto the complaint it holds; only where the read
    #: asked for it (`ComplaintStore.read(..., sealed=True)`), else None.
    sealed: Any = field(default=None, compare=False, repr=False)

    @property
    def committed(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(ctx, data) as the audit chain and the history's hash links commit to them: as
        stored, never upcast, so no hash changes when an upcast is added."""
        return self.as_stored or (self.ctx, self.data)

    @property
    def complaint_id(self) -> UUID | None:
        """The complaint this event belongs to (intake's index events name it in their data);
        None for a major incident's events, which concern many."""
        if self.aggregate == "Complaint":
            return self.aggregate_id
        named = self.data.get("complaint_id")
        return UUID(str(named)) if named is not None else None


@dataclass(frozen=True)
class Erasure:
    customer_id: str
    #: Keys destroyed by this erasure (0 when an earlier one had destroyed them already).
    keys_destroyed: int
    #: The customer's complaints, each of which records the erasure.
    complaints: list[UUID]


class ComplaintsApplication(Application[UUID]):
    name = "complaints"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Complaint: 50}

    def __init__(
        self, settings: Settings, policy: Policy, keks: KekFile, *, create_table: bool = False
    ):
        #: Customers' keys, wrapped by the KEKs, in a key store reached through the store's
        #: own connection pool.
        self.keystore = SqlKeyStore(
            lambda: getattr(self.recorder, "datastore"),  # noqa: B009  # both recorders have one
            settings,
            keks,
        )
        self.keys = KeyRing(self.keystore)
        super().__init__(env=store_env(settings, create_table=create_table))
        # Per instance, so each store honours its own settings.
        self.snapshotting_intervals = {Complaint: settings.snapshot_interval}  # type: ignore[misc]
        self.policy = policy
        self.write_attempts = settings.write_attempts
        self.index_secret = settings.index_key.get_secret_value().encode()
        #: Told of the events each save committed (the store's metrics count them).
        self.appended: Callable[[Iterable[Any]], None] = lambda events: None

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        """Only what `store_env` passes. The library would also read os.environ, where
        COMPLAINTS_* names are our settings, not its (e.g. COMPLAINTS_CREATE_TABLE)."""
        return Environment(name, {"IS_SNAPSHOTTING_ENABLED": "y", **(env or {})})

    def construct_mapper(self) -> Mapper[UUID]:
        """The library's mapper, sealing personal data with each customer's key."""
        mapper = super().construct_mapper()
        return SealingMapper(mapper.transcoder, mapper.compressor, mapper.cipher, keys=self.keys)

    def construct_snapshot_store(self) -> CurrentSnapshots:
        """Snapshots that fit the current code only (`shared.store.snapshots`)."""
        recorder = self.factory.aggregate_recorder(purpose="snapshots")
        return CurrentSnapshots(mapper=self.mapper, recorder=recorder)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Save, then snapshot anew each complaint whose snapshot was stale when read (unless
        the save took one at its snapshot point already). The events are committed by then:
        a snapshot that fails is only a cache missed, never the command's failure."""
        # The recorder writes the bindings this command made, and checks its keys, in the
        # events' own transaction (shared.store.postgres, shared.store.sqlite).
        recordings = super().save(*objs, keys=self.keys, **kwargs)
        self.appended(r.domain_event for r in recordings)
        snapshots = self.snapshots
        assert isinstance(snapshots, CurrentSnapshots)
        for obj in objs:
            if isinstance(obj, Complaint) and snapshots.is_stale(obj.id):
                with suppress(IntegrityError):  # taken meanwhile: one is enough
                    self.take_snapshot(obj.id, obj.version)
        return recordings

    # ------------------------------------------------------------------ commands
    def accept(
        self,
        intake: dict[str, Any],
        ctx: CommandContext,
        then: Callable[[Complaint], None] | None = None,
        answer: Callable[[Complaint], StoredAnswer] | None = None,
    ) -> tuple[Complaint, int | None]:
        """Accept a complaint; returns it and its position in the global order (None if the
        complaint already existed). `answer` gives the Idempotency-Key answer the acceptance
        stores in its own transaction (not called, nothing stored, if it existed).

        With an Idempotency-Key the id is derived from the client and the key, so a retry after
        a crash, or after its stored answer is gone, finds the complaint instead of creating
        it twice; the key presented with another request is refused (`IdempotencyKeyReused`).
        """
        complaint_id = (
            key_complaint_id(ctx.actor.id, ctx.idempotency_key) if ctx.idempotency_key else uuid4()
        )
        Complaint.check_intake_times(intake, ctx.at)
        policy = self.policy
        for attempt in self._attempts():
            with attempt:
                self.keys.start_command()
                thread_id = self._thread_id(complaint_id, intake)
                if ctx.idempotency_key:  # the ids the key may have given
                    candidates = [
                        complaint_id,
                        legacy_key_complaint_id(ctx.actor.id, ctx.idempotency_key),
                    ]
                elif attempt.retry_state.attempt_number > 1:  # did an earlier attempt commit?
                    candidates = [complaint_id]
                else:  # without a key the id is new: nothing to look for yet
                    candidates = []
                # What those ids hold and the thread, in one query.
                recorder: Any = self.recorder  # ours on both stores (postgres, sqlite)
                firsts, thread_events = recorder.select_first_events(candidates, all_of=thread_id)
                first_contexts = self._contexts_of(firsts)
                existing = None
                if ctx.idempotency_key:
                    existing = self._accepted_with_key(candidates, first_contexts, ctx)
                elif candidates:
                    existing = self._accepted_by_this_request(complaint_id, first_contexts, ctx)
                if existing is not None:
                    return self._unless_erased_unrecorded(existing, ctx), None
                thread = self._folded(thread_events)
                assert thread is None or isinstance(thread, ComplaintThread)
                repeat_of = thread.latest if thread else None
                complaint = Complaint.accept(
                    complaint_id=complaint_id,
                    acceptance_no=new_acceptance_no(ctx.at.astimezone(policy.tz)),
                    intake=intake,
                    repeat_of=repeat_of,
                    policy=policy,
                    ctx=ctx,
                )
                if then is not None:  # e.g. a regulator appeal escalates in the same save
                    then(complaint)
                number = AcceptanceNumber.reserve(complaint.acceptance_no, complaint.id, ctx.at)
                if thread is None:
                    thread = ComplaintThread.start(thread_id, complaint.id, ctx.at)
                else:
                    thread.join(complaint_id=complaint.id, timestamp=ctx.at)
                stored = answer(complaint) if answer is not None else None
                recordings = self.save(complaint, number, thread, answer=stored)
                return self._unless_erased_meanwhile(complaint, ctx), self._position(
                    recordings, complaint.id
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def execute(
        self,
        complaint_id: UUID,
        command: Callable[[Complaint], None],
        *,
        expected_version: int | None,
        ctx: CommandContext,
        find_own: bool = True,
    ) -> tuple[Complaint, int | None]:
        """Load, check the version, call the command, save; retried when another writer won.

        Before every retry the events written since are checked for this request's own: a save
        that did commit (a connection lost during COMMIT) is not applied twice. With an
        Idempotency-Key every event of the complaint is checked first: a request with this key
        that wrote already (it crashed, or its stored answer is gone) is answered as of what it
        wrote; another request with the key is refused (`IdempotencyKeyReused`). `find_own`
        off: the command is harmless to repeat and looks for nothing (an erasure).
        """
        first_version: int | None = 0 if ctx.idempotency_key and find_own else None
        for attempt in self._attempts():
            with attempt:
                self.keys.start_command()
                if first_version is not None:
                    own = self._own_event_since(complaint_id, first_version, ctx)
                    if own is not None:
                        return self._unless_erased_unrecorded(own, ctx), None
                complaint = self.load(complaint_id)
                if first_version is None:
                    first_version = complaint.version
                if expected_version is not None and complaint.version != expected_version:
                    raise VersionMismatch(expected_version, complaint.version)
                command(complaint)
                recordings = self.save(complaint)
                return self._unless_erased_meanwhile(complaint, ctx), self._position(
                    recordings, complaint.id
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def gather_incident(
        self, category: str, area: str, candidates: list[UUID], ctx: CommandContext
    ) -> MajorIncident | None:
        """Let complaints of one category and area join its major incident, or declare one
        (`IncidentSeries.gather` decides). The series, the incident and every member complaint
        are saved together, so concurrent watchers declare each incident once and escalate
        each complaint once. Returns the incident declared or grown; None if neither."""
        series_id = IncidentSeries.id_for(category, area)
        for attempt in self._attempts():
            with attempt:
                self.keys.start_command()
                series = self._replay(series_id) or IncidentSeries.start(category, area, ctx.at)
                assert isinstance(series, IncidentSeries)
                current = self.load_incident(series.current) if series.current else None
                self.keys.preload(candidates)
                complaints = [self.load(i) for i in candidates]
                incident = series.gather(current, complaints, self.policy, ctx)
                if incident is not None:
                    self.save(series, incident, *complaints)
                return incident
        raise AssertionError("unreachable")  # pragma: no cover

    def erase_customer(self, customer_id: str, ctx: CommandContext) -> Erasure:
        """Record the erasure on each of the customer's complaints, then destroy their key,
        then record it on any complaint accepted meanwhile. (The store scrubs afterwards.)

        The key goes last, so a crash in between leaves a key that a retry (or the next
        retention run) destroys; complaints already recorded are not recorded twice.

        A customer the key store has never seen (no complaint bound to them, no key) raises
        ComplaintNotFound, having recorded and destroyed nothing: an id mistyped is told, not
        answered as erased. One erased before still has its complaints: that is harmless
        again (nothing destroyed, nothing recorded twice). A key with no complaint (none
        arises now: a first complaint's key is written with its events) is destroyed.
        """
        bound = self.keys.complaints_of(customer_id)
        for complaint_id in bound:
            self._record_erasure(complaint_id, ctx)
        destroyed = self.keys.destroy(customer_id)
        erased = [
            complaint_id
            for complaint_id in self.keys.complaints_of(customer_id)
            if self._record_erasure(complaint_id, ctx)
        ]
        if not (bound or destroyed or erased):
            raise ComplaintNotFound(
                customer_id,
                f"No complaint of customer {customer_id}: there is nothing of theirs to erase.",
            )
        return Erasure(customer_id, destroyed, erased)

    def _thread_id(self, complaint_id: UUID, intake: dict[str, Any]) -> UUID:
        """The thread of the customer's complaints about this service number and category.
        The number enters by its digest under the customer's salt: once the customer is
        erased, no one can tell from the id which number it was (and nothing links to it)."""
        key = self.keys.bind(complaint_id, intake["customer"]["id"])
        return thread_id_of(intake, key.salt if key else secrets.token_hex(16), self.index_secret)

    def _record_erasure(self, complaint_id: UUID, ctx: CommandContext) -> bool:
        """Record the erasure on the complaint unless it has been; False if it does not
        exist (bound while its acceptance was being saved, and that save failed)."""
        try:
            self.execute(
                complaint_id,
                lambda c: c.erase_personal_data(ctx),
                expected_version=None,
                ctx=ctx,
                find_own=False,  # recorded once anyway; the key may have written just now
            )
        except ComplaintNotFound:
            return False
        return True

    def _unless_erased_meanwhile(self, complaint: Complaint, ctx: CommandContext) -> Complaint:
        """A command whose personal data is erased already (the customer was erased while it
        ran, or before) records the erasure unless it is, and answers the erased state: no
        complaint goes unrecorded, and no answer holds the plaintext."""
        if not self.keys.erased_meanwhile():
            return complaint
        self.keys.forget_read()  # the key this command read is gone: read nothing with it
        self._record_erasure(complaint.id, ctx)
        return self.load(complaint.id)

    def _unless_erased_unrecorded(self, complaint: Complaint, ctx: CommandContext) -> Complaint:
        """A request's own earlier write, found by its retry: if its key went meanwhile (the
        erasure looked for the customer's complaints before that write committed, and the
        write's own check never answered), the erasure is recorded now."""
        if complaint.personal_data_erased_at is not None or not self.keys.destroyed(complaint.id):
            return complaint
        self.keys.forget_read()
        self._record_erasure(complaint.id, ctx)
        return self.load(complaint.id)

    # -------------------------------------------------------------------- reads
    def load(self, complaint_id: UUID, version: int | None = None) -> Complaint:
        """The complaint (as of `version`): its latest snapshot, the events after it and its
        customer's key, read in one query; a snapshot that does not fit the current code is
        passed over and the complaint replayed from all its events (`shared.store.snapshots`)."""
        snapshots = self.snapshots
        assert isinstance(snapshots, CurrentSnapshots)
        recorder: Any = self.recorder  # ours on both stores: shared.store.postgres, .sqlite
        record, stored, binding = recorder.select_with_snapshot(
            complaint_id,
            version,
            snapshots.recorder.events_table_name,  # type: ignore[attr-defined]
        )
        if binding is not None:  # its key, read with it: opening its fields needs no query
            self.keys.loaded(complaint_id, self.keystore.binding_of(binding))
        complaint: Any = snapshots.fitting(record) if record is not None else None
        if record is not None and complaint is None:  # stale: replayed in full
            stored = self.recorder.select_events(complaint_id, lte=version)
        if complaint is not None:
            complaint = complaint.mutate(None)
        mapper = self.mapper
        for event in stored:
            domain_event: Any = mapper.to_domain_event(event)
            complaint = domain_event.mutate(complaint)
        if not isinstance(complaint, Complaint):
            raise ComplaintNotFound(complaint_id)
        return complaint

    def load_many(self, wanted: dict[UUID, int]) -> list[Complaint]:
        """Each complaint as of the given version, their keys read in one query."""
        self.keys.preload(wanted)
        return [self.load(i, v) for i, v in wanted.items()]

    def load_as_of(self, complaint_id: UUID, as_of: datetime) -> Complaint:
        """The complaint as it stood at `as_of`: the version in force then is found from the
        stored events' times alone (nothing is opened or rebuilt for it), then rebuilt."""
        version = None
        mapper = self.mapper
        assert isinstance(mapper, SealingMapper)
        for stored in self.recorder.select_events(complaint_id):
            if mapper.state_of(stored)["timestamp"] > as_of:
                break
            version = stored.originator_version
        if version is None:
            raise ComplaintNotFound(
                complaint_id, f"Complaint {complaint_id} did not exist yet at {as_of.isoformat()}."
            )
        return self.load(complaint_id, version)

    def load_incident(self, incident_id: UUID, version: int | None = None) -> MajorIncident:
        incident = self._replay(incident_id, version)
        if not isinstance(incident, MajorIncident):
            raise IncidentNotFound(incident_id)
        return incident

    def load_incidents(self, wanted: dict[UUID, int]) -> list[MajorIncident]:
        """Each incident as of the given version."""
        return [self.load_incident(i, v) for i, v in wanted.items()]

    def find_by_acceptance_no(self, acceptance_no: str) -> Complaint:
        try:
            number: AcceptanceNumber = self.repository.get(AcceptanceNumber.id_for(acceptance_no))
        except AggregateNotFoundError:
            raise ComplaintNotFound(acceptance_no) from None
        return self.load(number.complaint_id)

    def history(self, complaint_id: UUID) -> list[StoredEvent]:
        events = self._decoded(complaint_id)
        if not events or events[0].type != "Accepted":
            raise ComplaintNotFound(complaint_id)
        return events

    def event_at(self, complaint_id: UUID, version: int) -> StoredEvent:
        for event in self._decoded(complaint_id, gt=version - 1, lte=version):
            return event
        raise ComplaintNotFound(complaint_id, f"Complaint {complaint_id} has no event {version}.")

    def ping(self) -> int:
        return self.recorder.max_notification_id() or 0

    def read(
        self, after: int, limit: int, stop: int | None = None, *, sealed: bool = False
    ) -> list[StoredEvent]:
        """Events after a global position, in global order (for projections and exports);
        with `sealed`, each complaint's event also as an aggregate folds it
        (`StoredEvent.sealed`), decoded apart: nothing of one is shared with the other."""
        notifications = self.recorder.select_notifications(
            after, limit, stop=stop, inclusive_of_start=False
        )
        self.keys.preload(n.originator_id for n in notifications)
        events = [self._stored(n, position=n.id) for n in notifications]
        if not sealed:
            return events
        mapper = self.mapper
        return [
            replace(event, sealed=mapper.to_domain_event(n))
            if event.aggregate == "Complaint"
            else event
            for event, n in zip(events, notifications, strict=True)
        ]

    # ------------------------------------------------------------------ helpers
    def _attempts(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(IntegrityError),
            stop=stop_after_attempt(self.write_attempts),
            wait=wait_random_exponential(multiplier=0.005, max=0.2),
            retry_error_callback=self._give_up,
            reraise=False,
        )

    @staticmethod
    def _give_up(_state: object) -> None:
        raise ConcurrentModification(
            "Other writers changed this complaint at the same time; read it again and retry."
        )

    def _accepted_with_key(
        self, candidates: list[UUID], first: dict[UUID, dict[str, Any]], ctx: CommandContext
    ) -> Complaint | None:
        """The complaint this client's Idempotency-Key accepted already, if any, from the
        request contexts of the first events (`first`) of the ids the key may have given (a
        complaint accepted before ids had their present form is found under its old id, when
        its acceptance records this very client and key). `IdempotencyKeyReused` if another
        request accepted it."""
        for candidate in candidates:
            recorded = first.get(candidate, {})
            if not _same_key(recorded, ctx):
                continue  # none, or an old id that another client's key gave
            if _other_request(recorded, ctx):
                raise IdempotencyKeyReused()
            return self.load(candidate)
        return None

    def _accepted_by_this_request(
        self, complaint_id: UUID, first: dict[UUID, dict[str, Any]], ctx: CommandContext
    ) -> Complaint | None:
        """The complaint an earlier attempt of this very request accepted, if its write
        committed though its reply was lost (the connection dropped after the commit: the
        append was sent again and collided with its own events). The id is this request's
        own; its first event (its context in `first`) records the request."""
        if first.get(complaint_id, {}).get("request_id") == ctx.request_id:
            return self.load(complaint_id)
        return None

    def _contexts_of(self, stored: list[Any]) -> dict[UUID, dict[str, Any]]:
        """The request context of each stored event, by its aggregate, read from the stored
        state alone (nothing built or opened)."""
        return {s.originator_id: self._context_of(s) for s in stored}

    def _context_of(self, stored: Any) -> dict[str, Any]:
        """A stored event's request context, read from its stored state alone."""
        mapper = self.mapper
        assert isinstance(mapper, SealingMapper)
        return mapper.state_of(stored).get("ctx") or {}

    def _folded(self, stored: list[Any]) -> Any:
        """An index aggregate folded from its stored events (read with others, see `_replay`);
        None if it has none."""
        aggregate: Any = None
        for record in stored:
            event: Any = self.mapper.to_domain_event(record)
            aggregate = event.mutate(aggregate)
        return aggregate

    def _replay(self, aggregate_id: UUID, version: int | None = None) -> Any:
        """An index aggregate (a thread, an incident, a series) replayed from its events
        alone, up to `version`; None if it has none. They are never snapshotted, so the
        repository's look in the snapshot table would be a needless round trip."""
        return self._folded(list(self.recorder.select_events(aggregate_id, lte=version)))

    def _own_event_since(
        self, complaint_id: UUID, version: int, ctx: CommandContext
    ) -> Complaint | None:
        """The complaint as of this request's event, if one was written after `version`."""
        written = self._contexts(complaint_id, gt=version)
        for at, (event_version, recorded) in enumerate(written):
            same_request = recorded.get("request_id") == ctx.request_id
            same_key = _same_key(recorded, ctx)
            if same_key and not same_request and _other_request(recorded, ctx):
                raise IdempotencyKeyReused()
            if same_request or same_key:
                last = event_version
                # A command may write several events (a callback that escalates): take all.
                for later_version, later in written[at + 1 :]:
                    if later.get("request_id") != recorded.get("request_id"):
                        break
                    last = later_version
                return self.load(complaint_id, last)
        return None

    def _contexts(
        self, complaint_id: UUID, *, gt: int | None = None, lte: int | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """Each stored event's version and request context, read from the stored state alone:
        nothing is built or opened (no key read) to find which request wrote what."""
        return [
            (stored.originator_version, self._context_of(stored))
            for stored in self.recorder.select_events(complaint_id, gt=gt, lte=lte)
        ]

    @staticmethod
    def _position(recordings: list[Any], complaint_id: UUID) -> int:
        ids = [
            r.notification.id for r in recordings if r.notification.originator_id == complaint_id
        ]
        return max(ids) if ids else 0

    def _decoded(
        self, aggregate_id: UUID, gt: int | None = None, lte: int | None = None
    ) -> list[StoredEvent]:
        return [self._stored(s) for s in self.recorder.select_events(aggregate_id, gt=gt, lte=lte)]

    def _stored(self, record: Any, position: int | None = None) -> StoredEvent:
        """A stored record decoded for reads, projections and the audit chain."""
        mapper = self.mapper
        assert isinstance(mapper, SealingMapper)
        event, as_stored = mapper.decode(record)
        return stored_event(
            event, position=position, salt_of=self.keys.salt_opened, as_stored=as_stored
        )


def key_complaint_id(actor_id: str, key: str) -> UUID:
    """The id of the complaint an acceptance with an Idempotency-Key creates. Client and key
    enter as a JSON array: no pair of them gives another pair's id."""
    return uuid5(NAMESPACE, json.dumps(["complaint", actor_id, key], separators=(",", ":")))


def legacy_key_complaint_id(actor_id: str, key: str) -> UUID:
    """The id such a complaint had before: ambiguous (client `ops` with key `alice:k1` and
    client `ops:alice` with key `k1` get the same), so a complaint found under it counts only
    if its acceptance records this client and key. Kept while retries of acceptances made
    before the change may come (a crashed one, or one whose answer was forgotten)."""
    return uuid5(NAMESPACE, f"complaint:{actor_id}:{key}")


def _same_key(recorded: dict[str, Any], ctx: CommandContext) -> bool:
    """The recorded event was written with this client's Idempotency-Key."""
    return (
        ctx.idempotency_key is not None
        and recorded.get("idempotency_key") == ctx.idempotency_key
        and (recorded.get("actor") or {}).get("id") == ctx.actor.id
    )


def _other_request(recorded: dict[str, Any], ctx: CommandContext) -> bool:
    """The recorded event was written by another request than this one, by their fingerprints
    (events recorded before fingerprints were, and work no request asked for, have none:
    they are taken as the same request, as they were before)."""
    theirs = recorded.get("request_fingerprint")
    ours = ctx.request_fingerprint
    return theirs is not None and ours is not None and theirs != ours


def thread_id_of(intake: dict[str, Any], salt: str, secret: bytes) -> UUID:
    """The id of the thread an intake joins (see `ComplaintsApplication._thread_id`)."""
    return ComplaintThread.id_for(
        intake["customer"]["id"],
        digest(salt, intake["service_number"]),
        intake["category"],
        secret,
    )


def stored_event(
    event: Any,
    *,
    position: int | None,
    salt_of: Callable[[UUID], str | None],
    as_stored: dict[str, Any] | None = None,
) -> StoredEvent:
    """A domain event as reads, projections and the audit chain see it; `salt_of` names the
    salt of the key its personal data was opened with (see `StoredEvent.salt`); `as_stored`
    its fields as stored, where an upcast changed them (see `SealingMapper.decode`)."""
    data = _data_of(event.__dict__)
    qualname = type(event).__qualname__
    plaintext = any(
        is_plaintext(parent[name])
        for path in EVENT_FIELDS
        if path[0] in data  # (an event has few of the fields: most paths end here)
        for parent, name in leaves(data, path)
    )
    return StoredEvent(
        version=event.originator_version,
        type=type(event).__name__,
        at=event.timestamp,
        ctx=dict(getattr(event, "ctx", {}) or {}),
        data=data,
        aggregate_id=event.originator_id,
        aggregate=qualname.split(".")[0],
        position=position,
        salt=salt_of(event.originator_id) if plaintext else None,
        as_stored=(
            (dict(as_stored.get("ctx", {}) or {}), _data_of(as_stored))
            if as_stored is not None
            else None
        ),
    )


def _data_of(state: dict[str, Any]) -> dict[str, Any]:
    """An event's own data: its fields but the envelope and the context."""
    return {k: v for k, v in state.items() if k not in ENVELOPE and k != "ctx"}
