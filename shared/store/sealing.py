"""Per-customer encryption of personal data in the event store (crypto-shredding).

Each customer has one key (AES-256-GCM) and one salt, kept wrapped in a key store of their
own (`shared.store.keystore`). The mapper seals every personal field (`shared.domain.personal`)
of an event or a snapshot on its way into the store, so the stored events and snapshots hold
only ciphertext. A sealed field keeps the salted SHA-256 digest the audit chain commits to.

On the way out there are two readers. What decodes stored events for the history, the
projections and the audit chain (`SealingMapper.decode`) gets them opened. What builds an
aggregate (events and snapshots through the library's stores, `to_domain_event`) gets them
still sealed (`SealedText`, with the key read for it): no rule of the aggregate reads personal
data, so nothing is decrypted to rebuild a complaint, to run a command on it or to snapshot it
(a sealed value is stored again as it was read); a view opens what it shows.

Erasure deletes the customer's key: from then on every sealed field of that customer reads as
`Erased` (carrying its digest), wherever it is stored, and nothing else of the complaint
changes. A customer seen again after erasure gets a new key.

The key store is reached through the event store's own connection pool (the mapper runs in the
store's worker threads, where nothing awaits).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import Cipher, Compressor, Mapper, StoredEvent, Transcoder

from shared.audit.verify import digest
from shared.domain.personal import (
    EVENT_FIELDS,
    STATE_FIELDS,
    Erased,
    Path,
    Sealed,
    copied_along,
    is_plaintext,
    replace,
)
from shared.store.keystore import Binding, Bound, CustomerKey, KeyStore

T = TypeVar("T")

SEALED = "$sealed"
#: How many complaints' key bindings a process remembers.
BINDINGS_KEPT = 100_000
SNAPSHOT_FIELDS: tuple[Path, ...] = tuple(("state", *path) for path in STATE_FIELDS)


class KeyRing:
    """The customers' keys, and the key each complaint was accepted under (synchronous).

    A complaint stays bound to the key in force at its acceptance: once that key is destroyed,
    whatever personal data the complaint records later is stored erased, never under a newer
    key of the same customer. Keys read are remembered only within a `scope()` (one call into
    the store), so a key destroyed by another process is not used by a later call: what a
    call reads after the key is gone reads as erased. (A value that call read still sealed
    keeps the key it was read with, `SealedText`: shown later, it shows what it would have
    shown had it been opened when read.) The keys themselves are in a key store
    (`shared.store.keystore`).
    """

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._local = threading.local()
        #: The key each complaint is bound to never changes: remembered for good (bounded).
        self._bindings: OrderedDict[UUID, str] = OrderedDict()
        self._bindings_lock = threading.Lock()

    # ----------------------------------------------------------------------- scope
    @contextmanager
    def scope(self) -> Iterator[None]:
        outermost = getattr(self._local, "memo", None) is None
        if outermost:
            self._local.memo = _Memo()
        try:
            yield
        finally:
            if outermost:
                self._local.memo = None

    def run(self, func: Callable[[], T]) -> T:
        with self.scope():
            return func()

    @property
    def _memo(self) -> _Memo:
        memo: _Memo | None = getattr(self._local, "memo", None)
        return memo if memo is not None else _Memo()

    # ------------------------------------------------------------------- keys
    def bind(self, complaint_id: UUID, customer_id: str) -> CustomerKey | None:
        """Bind an accepted complaint to its customer's live key, made if they have none (a
        first complaint, or the first since their erasure); a complaint bound before keeps
        its key. The key to seal it with, None if that key is destroyed.

        A new binding (and a new key) is written by the event store in the transaction that
        saves the complaint's events (`pending`): never a key without its events, nor events
        sealed with a key that was not committed with them."""
        memo = self._memo
        if complaint_id in memo.bound:
            return memo.bound[complaint_id]
        bound, binding = self.store.prepare(str(complaint_id), customer_id)
        if binding is None:
            self._remember_binding(complaint_id, bound.key_id)
        else:
            memo.pending[complaint_id] = binding
        memo.keys[bound.key_id] = memo.bound[complaint_id] = bound.key
        return bound.key

    def pending(self) -> tuple[list[Binding], list[str]]:
        """What the save about to be written must write and check in its transaction: the
        new bindings, and the keys this command sealed with or binds to (which must still
        exist when it commits; the store locks them until then, so an erasure waits)."""
        memo = self._memo
        used = {k for k in memo.sealed if k} | {b.key_id for b in memo.pending.values()}
        memo.checking = used
        return list(memo.pending.values()), sorted(used)

    def written(self, live: Iterable[str]) -> None:
        """The save committed its bindings; of the keys it used, these still existed."""
        memo = self._memo
        for complaint_id, binding in memo.pending.items():
            self._remember_binding(complaint_id, binding.key_id)
        memo.pending.clear()
        memo.live = set(live)
        memo.checked = memo.checking

    def complaint_key(self, complaint_id: UUID) -> CustomerKey | None:
        """The key the complaint is bound to, None once destroyed. A binding made in this
        scope comes first: a command saved with the acceptance seals with the key the
        acceptance binds, which is written only with their events."""
        memo = self._memo
        if complaint_id in memo.bound:
            return memo.bound[complaint_id]
        key_id = self._binding(complaint_id)
        return self.key(key_id) if key_id else None

    def destroyed(self, complaint_id: UUID) -> bool:
        """Whether the complaint is bound to a key that no longer exists (read afresh)."""
        key_id = self._binding(complaint_id)
        return key_id is not None and not self.store.live([key_id])

    def key(self, key_id: str) -> CustomerKey | None:
        """A key by its id, or None once destroyed."""
        memo = self._memo
        if key_id not in memo.keys:
            memo.keys[key_id] = self.store.get(key_id)
        return memo.keys[key_id]

    def preload(self, complaint_ids: Iterable[UUID | str]) -> None:
        """Read the keys of many complaints in one query, for this scope: a page of events
        from hundreds of customers then opens without a query per customer."""
        wanted = sorted({str(i) for i in complaint_ids})
        if not wanted:
            return
        memo = self._memo
        # Only this scope's keys: bindings read here are not remembered for good (an export
        # reads every complaint there is, and would crowd out the ones commands use).
        for bound in self.store.bindings(wanted).values():
            if bound.key_id not in memo.keys:
                memo.keys[bound.key_id] = bound.key

    def loaded(self, complaint_id: UUID, bound: Bound) -> None:
        """A complaint's binding, read with its events: its key serves this scope, and the
        binding (which never changes) is remembered."""
        memo = self._memo
        if bound.key_id not in memo.keys:
            memo.keys[bound.key_id] = bound.key
        self._remember_binding(complaint_id, bound.key_id)

    def opened(self, complaint_id: UUID, key: CustomerKey) -> None:
        self._memo.opened[complaint_id] = key

    def sealed(self, key: CustomerKey | None) -> None:
        """Personal data was sealed with this key (None: its key was destroyed already)."""
        self._memo.sealed.add(key.key_id if key else None)

    def start_command(self) -> None:
        """A command begins (or begins again): nothing sealed or bound by it yet."""
        memo = self._memo
        memo.sealed.clear()
        for complaint_id in memo.pending:  # bindings of a save that failed: not made
            memo.bound.pop(complaint_id, None)
        memo.pending.clear()
        memo.live = None
        memo.checked = memo.checking = set()

    def erased_meanwhile(self) -> bool:
        """Whether personal data this command stored is erased already: its key was destroyed
        before it was sealed, or since (checked now)."""
        memo = self._memo
        sealed = memo.sealed
        if None in sealed:
            return True
        used = {k for k in sealed if k}
        # Keys the save checked as it committed; any other (a snapshot taken after it sealed
        # with one) is checked now.
        checked = memo.checked if memo.live is not None else set()
        live = (memo.live or set()) | self.store.live(sorted(used - checked))
        return not live >= used

    def forget_read(self) -> None:
        """Forget the keys read in this scope: one was destroyed since (by another process),
        and what is read next must not be opened with it."""
        memo = self._memo
        memo.keys.clear()
        memo.bound.clear()
        memo.opened.clear()

    def salt_opened(self, complaint_id: UUID) -> str | None:
        """The salt of the key that opened this complaint's fields in this scope."""
        key = self._memo.opened.get(complaint_id)
        return key.salt if key else None

    def complaints_of(self, customer_id: str) -> list[UUID]:
        return [UUID(c) for c in self.store.complaints_of(customer_id)]

    def destroy(self, customer_id: str) -> int:
        """Delete the customer's key; how many were deleted (0 or 1). `scrub` follows."""
        destroyed = self.store.destroy(customer_id)
        self.forget_read()
        return destroyed

    def scrub(self) -> None:
        """Wipe what the database keeps of deleted keys (and of other rows deleted since)."""
        self.store.scrub()

    # ---------------------------------------------------------------- helpers
    def _binding(self, complaint_id: UUID) -> str | None:
        with self._bindings_lock:
            key_id = self._bindings.get(complaint_id)
        if key_id is None:
            key_id = self.store.bound_key_id(str(complaint_id))
            if key_id is None:
                return None
            self._remember_binding(complaint_id, key_id)
        return key_id

    def _remember_binding(self, complaint_id: UUID, key_id: str) -> None:
        with self._bindings_lock:
            self._bindings[complaint_id] = key_id
            if len(self._bindings) > BINDINGS_KEPT:
                self._bindings.popitem(last=False)


class _Memo:
    """What one call into the store has read and sealed."""

    def __init__(self) -> None:
        self.keys: dict[str, CustomerKey | None] = {}
        self.bound: dict[UUID, CustomerKey | None] = {}
        self.opened: dict[UUID, CustomerKey] = {}
        self.sealed: set[str | None] = set()
        #: Bindings made by this command, written with its events (`KeyRing.pending`).
        self.pending: dict[UUID, Binding] = {}
        #: Of the keys the command's save used, those that existed when it committed (None
        #: until a save reports them).
        self.live: set[str] | None = None
        #: The keys that save checked (and those the save being written checks).
        self.checked: set[str] = set()
        self.checking: set[str] = set()


def _aad(complaint_id: UUID, key_id: str) -> bytes:
    """Binds a sealed value to its complaint and key: it cannot be moved elsewhere."""
    return complaint_id.bytes + key_id.encode("ascii")


def seal(key: CustomerKey, complaint_id: UUID, plaintext: str) -> dict[str, str]:
    nonce = secrets.token_bytes(12)
    sealed = key.aead.encrypt(nonce, plaintext.encode("utf-8"), _aad(complaint_id, key.key_id))
    return {
        SEALED: base64.b64encode(nonce + sealed).decode("ascii"),
        "key": key.key_id,
        "sha256": digest(key.salt, plaintext),
    }


def unseal(key: CustomerKey, complaint_id: UUID, envelope: dict[str, Any]) -> str:
    return _decrypt(key, _aad(complaint_id, key.key_id), envelope)


def _decrypt(key: CustomerKey, aad: bytes, envelope: dict[str, Any]) -> str:
    raw = binascii.a2b_base64(envelope[SEALED])
    return key.aead.decrypt(raw[:12], raw[12:], aad).decode("utf-8")


class SealedText(Sealed):
    """A personal value read from the store and left sealed: the stored envelope, and the
    customer's key as it was when the value was read (see `KeyRing`). Opened only when shown;
    stored again as it is when the aggregate writes it anew (a snapshot, a handover)."""

    __slots__ = ("_aad", "_key", "complaint_id", "envelope")

    def __init__(
        self, envelope: dict[str, Any], complaint_id: UUID, key: CustomerKey, aad: bytes
    ) -> None:
        # (Sealed.__init__ inlined: a snapshot makes one of these per personal field it holds.)
        self.sha256 = envelope["sha256"]
        self.envelope = envelope
        self.complaint_id = complaint_id
        self._key = key
        self._aad = aad

    @property
    def key(self) -> CustomerKey:
        return self._key

    def open(self) -> str:
        return _decrypt(self._key, self._aad, self.envelope)


class SealingMapper(Mapper[UUID]):
    """The library's mapper, sealing personal fields with the customer's key."""

    def __init__(
        self,
        transcoder: Transcoder,
        compressor: Compressor | None = None,
        cipher: Cipher | None = None,
        *,
        keys: KeyRing,
    ) -> None:
        super().__init__(transcoder, compressor, cipher)
        self.keys = keys

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        state = vars(domain_event)
        paths = tuple(path for path in _paths(domain_event) if path[0] in state)
        if not paths:
            return super().to_stored_event(domain_event)
        complaint_id = domain_event.originator_id
        sealed_state = copied_along(state, paths)
        # The customer's key, taken at the first plaintext (None once destroyed).
        taken: list[CustomerKey | None] = []
        kept: dict[str, CustomerKey] = {}
        erased = False

        def key_for_plaintext() -> CustomerKey | None:
            if not taken:
                intake = state.get("intake")
                taken.append(
                    self.keys.bind(complaint_id, intake["customer"]["id"])
                    if isinstance(intake, dict)  # the acceptance
                    else self.keys.complaint_key(complaint_id)
                )
            return taken[0]

        def seal_field(value: Any) -> Any:
            nonlocal erased
            if isinstance(value, SealedText) and value.complaint_id == complaint_id:
                # As read from this complaint: stored again as it was.
                kept[value.key.key_id] = value.key
                return value.envelope
            if isinstance(value, Erased):
                erased = True
                return {"sha256": value.sha256}
            if isinstance(value, Sealed):  # read from another complaint: sealed anew, with
                value = value.open()  # this one's key (an envelope is bound to its complaint)
            if is_plaintext(value):
                key = key_for_plaintext()
                return seal(key, complaint_id, value) if key else _born_erased(value)
            return value

        for path in paths:
            replace(sealed_state, path, seal_field)
        if taken or erased:
            self.keys.sealed(taken[0] if taken else None)
        for kept_key in kept.values():  # stored under it again: erased meanwhile if it is gone
            self.keys.sealed(kept_key)
        sealed_event = object.__new__(type(domain_event))
        object.__setattr__(sealed_event, "__dict__", sealed_state)
        return super().to_stored_event(sealed_event)

    def state_of(self, stored_event: StoredEvent) -> dict[str, Any]:
        """A stored event's fields as stored (personal data still sealed), without building
        the event or opening anything."""
        state = stored_event.state
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        decoded: dict[str, Any] = self.transcoder.decode(state)
        return decoded

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        """The event (or snapshot) as an aggregate is built from it: its personal fields are
        left sealed (`SealedText`), or read as `Erased` once their key is destroyed. Nothing is
        decrypted (personal fields keep their paths when upcast)."""
        domain_event = super().to_domain_event(stored_event)
        self._keep_sealed(domain_event.originator_id, vars(domain_event), _paths(domain_event))
        return domain_event

    def decode(
        self, stored_event: StoredEvent
    ) -> tuple[DomainEventProtocol[UUID], dict[str, Any] | None]:
        """The event in its current shape, personal data opened, and its fields as stored
        (personal data opened) when an upcast (`shared.domain.upcasts`) changed them, else
        None: what the audit chain commits to is the event as it was written, whatever the
        code reading it."""
        domain_event = super().to_domain_event(stored_event)
        paths = _paths(domain_event)
        self._open_fields(domain_event.originator_id, vars(domain_event), paths)
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version == 1:
            return domain_event, None  # no upcasts: as stored
        state = self.state_of(stored_event)
        if state.pop("class_version", 1) == class_version:
            return domain_event, None
        state["originator_id"] = domain_event.originator_id
        state["originator_version"] = domain_event.originator_version
        self._open_fields(domain_event.originator_id, state, paths)
        return domain_event, state

    def _open_fields(
        self, complaint_id: UUID, state: dict[str, Any], paths: tuple[Path, ...]
    ) -> None:
        def open_(value: Any) -> Any:
            return self._open(complaint_id, value) if _is_envelope(value) else value

        for path in paths:
            if path[0] in state:
                replace(state, path, open_)

    def _open(self, complaint_id: UUID, envelope: dict[str, Any]) -> str:
        key = self.keys.key(envelope["key"]) if SEALED in envelope else None
        if key is None:
            return Erased(str(envelope["sha256"]))
        self.keys.opened(complaint_id, key)
        return unseal(key, complaint_id, envelope)

    def _keep_sealed(
        self, complaint_id: UUID, state: dict[str, Any], paths: tuple[Path, ...]
    ) -> None:
        """Each stored envelope at `paths` as a `SealedText` with its key, or `Erased`."""
        found: dict[str, tuple[CustomerKey, bytes] | None] = {}

        def keep(value: Any) -> Any:
            if type(value) is not dict or "sha256" not in value:
                return value
            key_id = value.get("key") if SEALED in value else None
            if key_id is None:
                return Erased(str(value["sha256"]))
            if key_id not in found:
                key = self.keys.key(key_id)
                found[key_id] = (key, _aad(complaint_id, key_id)) if key else None
            key_and_aad = found[key_id]
            if key_and_aad is None:
                return Erased(str(value["sha256"]))
            return SealedText(value, complaint_id, *key_and_aad)

        for path in paths:
            if path[0] in state:  # (an event has few of the fields: most paths end here)
                replace(state, path, keep)


def _is_envelope(value: Any) -> bool:
    """A personal field as stored: sealed, or erased (its digest alone)."""
    return isinstance(value, dict) and "sha256" in value


def _born_erased(plaintext: str) -> dict[str, str]:
    """Personal data of a complaint whose key is destroyed: stored erased, under a salt that
    is thrown away at once."""
    return {"sha256": digest(secrets.token_hex(16), plaintext)}


def _paths(domain_event: object) -> tuple[Path, ...]:
    return SNAPSHOT_FIELDS if isinstance(domain_event, Snapshot) else EVENT_FIELDS
