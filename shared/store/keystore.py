"""The customers' keys, in a key store of their own, each wrapped by a key-encryption key.

A customer's key (AES-256-GCM) and salt (see `shared.store.sealing`) are stored only wrapped:
sealed with AES-256-GCM under a key-encryption key (KEK) that never enters the database. The
KEKs live in one file (`COMPLAINTS_KEK_PATH`, mode 600), one line each; the last line wraps
new keys. Each wrapped key records the id of the KEK that wrapped it (the first 16 hex digits
of the KEK's SHA-256), so a rotation that stopped half-way is finished by running it again.
Every change of the file, and each whole rotation or purge, holds an exclusive `flock` on the
lock file beside it (`<KEK file>.lock`, mode 600), so concurrent runs never lose a KEK; the
kernel releases the lock when its process ends, crashed or not.

Erasure deletes the wrapped key and scrubs what the database engine keeps of it: SQLite
overwrites deleted content (`secure_delete`, set on every connection) and the WAL is
checkpointed and truncated; on PostgreSQL the key table is vacuumed. Dead tuples, WAL segments
and backups may still hold the wrapped key: KEK rotation re-wraps every live key under a new
KEK, and the old KEK is destroyed `COMPLAINTS_KEK_RETENTION_DAYS` after it was superseded, from
when on no copy wrapped by it opens.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import logging
import os
import secrets
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.utils import retry

from shared.settings import Settings
from shared.store.tables import customer_complaints, wrapped_keys

log = logging.getLogger(__name__)

#: The table of wrapped customer keys, and the table binding each complaint to its key.
KEY_TABLE = wrapped_keys.name
BINDING_TABLE = customer_complaints.name
#: Keys re-wrapped per transaction by a rotation.
REWRAP_BATCH = 500
F = TypeVar("F", bound=Callable[..., Any])


#: The store's reads (and the library's, with the same policy) retried on a connection found
#: lost: the pool then hands out a fresh one (`shared.store.postgres.DrainingDatastore`).
def reconnecting(func: F) -> F:
    return cast(F, retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)(func))


KEK_BYTES = 32
SALT_BYTES = 16
FILE_HEADER = (
    "# Key-encryption keys of the complaint service (COMPLAINTS_KEK_PATH): never back this\n"
    "# file up with the database. One per line: <id> <in force from> <key, base64>; the last\n"
    "# line wraps new keys, unless it is marked `staged` (held, not yet in force). Managed by\n"
    "# `python -m shared.cli.kek`.\n"
)


class KekFileError(ValueError):
    """The KEK file is missing or malformed."""


class KekNotHeld(RuntimeError):
    """A staged KEK that some running process does not hold yet: not put in force."""


class KekMissing(LookupError):
    """A wrapped key names a KEK that the KEK file does not hold (any more)."""


@dataclass(frozen=True)
class CustomerKey:
    key_id: str
    customer_id: str
    secret: bytes
    salt: str  # 32 lowercase hex digits
    aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aead", AESGCM(self.secret))  # made once, used per field

    @classmethod
    def new(cls, customer_id: str) -> CustomerKey:
        """A fresh key and salt for the customer."""
        return cls(
            key_id=secrets.token_hex(16),
            customer_id=customer_id,
            secret=AESGCM.generate_key(bit_length=256),
            salt=secrets.token_hex(SALT_BYTES),
        )


def fingerprint(secret: bytes) -> str:
    """A KEK's id: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(secret).hexdigest()[:16]


@dataclass(frozen=True)
class Kek:
    """One key-encryption key."""

    id: str
    #: When it was put in force (for a staged KEK: when it was staged).
    created_at: datetime
    secret: bytes = field(repr=False)
    #: Held by every process that reads the file, able to unwrap, but wrapping nothing yet: a
    #: rotation puts it in force once every running process holds it (`KekFile.stage`).
    staged: bool = False

    @classmethod
    def new(cls, now: datetime, *, staged: bool = False) -> Kek:
        secret = AESGCM.generate_key(bit_length=256)
        return cls(fingerprint(secret), _second(now), secret, staged)

    def wrap(self, key: CustomerKey) -> bytes:
        """The key and salt sealed under this KEK, bound to the key's id and customer."""
        nonce = secrets.token_bytes(12)
        plain = key.secret + bytes.fromhex(key.salt)
        return nonce + AESGCM(self.secret).encrypt(
            nonce, plain, self._aad(key.key_id, key.customer_id)
        )

    def unwrap(self, key_id: str, customer_id: str, wrapped: bytes) -> CustomerKey:
        plain = AESGCM(self.secret).decrypt(
            wrapped[:12], wrapped[12:], self._aad(key_id, customer_id)
        )
        return CustomerKey(key_id, customer_id, plain[:KEK_BYTES], plain[KEK_BYTES:].hex())

    def _aad(self, key_id: str, customer_id: str) -> bytes:
        return f"complaints-key:{self.id}:{key_id}:{customer_id}".encode()

    def seal(self, plain: bytes, purpose: str) -> bytes:
        """Another secret of ours (a webhook's signing secret) sealed under this KEK, bound to
        `purpose` (what it is the secret of): opened only for that purpose."""
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self.secret).encrypt(nonce, plain, self._purpose(purpose))

    def unseal(self, sealed: bytes, purpose: str) -> bytes:
        return AESGCM(self.secret).decrypt(sealed[:12], sealed[12:], self._purpose(purpose))

    def _purpose(self, purpose: str) -> bytes:
        return f"complaints-secret:{self.id}:{purpose}".encode()

    def line(self) -> str:
        at = self.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        staged = " staged" if self.staged else ""
        return f"{self.id} {at} {base64.b64encode(self.secret).decode('ascii')}{staged}\n"


def _second(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(microsecond=0)


def lock_path(path: Path) -> Path:
    """The lock file beside the KEK file, locked by whoever changes the KEK file."""
    return path.with_name(f"{path.name}.lock")


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on the KEK file's lock file (made mode 600), waiting for any
    other holder, in this process or another. Closing the descriptor, or the process ending in
    any way, releases it."""
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class KekFile:
    """The KEKs in their file, oldest first; the last one in force wraps new keys, and a staged
    one may follow it (thread-safe).

    The file is read again when it changes (a rotation by another process), and when a wrapped
    key names a KEK not known yet. Changes hold the file's lock (`locked`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        #: Held by the thread that holds the file's lock, which may take it again (reentrant).
        self._writer = threading.RLock()
        self._holding = False
        self._keks: list[Kek] = []
        self._stamp: tuple[int, int, int] | None = None
        self._read()

    @classmethod
    def load(cls, path: Path, *, create: bool, now: datetime | None = None) -> KekFile:
        """The KEK file; created (mode 600, one new KEK) only where `create` allows, e.g. by
        the setup step in development."""
        if not path.exists():
            if not create:
                raise KekFileError(
                    f"no key-encryption key file at {path}: create one with `python -m "
                    "shared.cli.kek create` (or `make setup` in development) and set "
                    "COMPLAINTS_KEK_PATH to it; keep it apart from the database and its backups"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            with _flock(path):
                if not path.exists():  # made meanwhile by another setup: keep that one
                    _write(path, [Kek.new(now or datetime.now(UTC))], exclusive=True)
        return cls(path)

    # ------------------------------------------------------------------ reading
    @property
    def keks(self) -> list[Kek]:
        self.refresh()
        with self._lock:
            return list(self._keks)

    @property
    def in_force(self) -> list[Kek]:
        """The KEKs but a staged one: the last wraps new keys, the others are superseded."""
        return [k for k in self.keks if not k.staged]

    @property
    def current(self) -> Kek:
        """The KEK that wraps new keys."""
        return self.in_force[-1]

    @property
    def staged(self) -> Kek | None:
        """The KEK staged to be put in force next, if any."""
        return next((k for k in self.keks if k.staged), None)

    def get(self, kek_id: str) -> Kek:
        with self._lock:
            found = next((k for k in self._keks if k.id == kek_id), None)
        if found is None:
            self.refresh(force=True)
            with self._lock:
                found = next((k for k in self._keks if k.id == kek_id), None)
        if found is None:
            raise KekMissing(
                f"a customer key is wrapped by KEK {kek_id}, which {self.path} does not hold: "
                "it was destroyed (a copy of the database older than the KEK retention can no "
                "longer be read, by design), or COMPLAINTS_KEK_PATH names the wrong file"
            )
        return found

    def retired_at(self, kek: Kek) -> datetime | None:
        """When the KEK was superseded (its successor put in force); None while current or
        staged."""
        keks = self.in_force
        if kek.id not in [k.id for k in keks]:
            return None
        index = [k.id for k in keks].index(kek.id)
        return keks[index + 1].created_at if index + 1 < len(keks) else None

    def destroyed_from(self, kek: Kek, retention: timedelta) -> datetime | None:
        """From when purge may destroy the KEK (superseded `retention` ago); None while
        current."""
        retired = self.retired_at(kek)
        return retired + retention if retired is not None else None

    def refresh(self, *, force: bool = False) -> None:
        try:
            info = os.stat(self.path)
        except OSError:
            return  # keep what was read; the next look tries again
        if force or (info.st_ino, info.st_mtime_ns, info.st_size) != self._stamp:
            self._read()

    def _read(self) -> None:
        try:
            info = os.stat(self.path)
            text = self.path.read_text("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise KekFileError(f"cannot read the KEK file {self.path}: {exc}") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s can be read by others than its owner: chmod 600 it", self.path)
        keks = [_parse(self.path, n, line) for n, line in _lines(text)]
        if not any(not k.staged for k in keks):
            raise KekFileError(f"{self.path} holds no key-encryption key in force")
        if any(k.staged for k in keks[:-1]):
            raise KekFileError(f"{self.path}: only its last KEK may be staged")
        with self._lock:
            self._keks = keks
            self._stamp = (info.st_ino, info.st_mtime_ns, info.st_size)

    def require(self, kek: Kek) -> None:
        """Refuse (KekMissing) unless the file, read afresh, holds this KEK: no key may be
        wrapped under a KEK that the services cannot find."""
        self.refresh(force=True)
        with self._lock:
            held = any(k.id == kek.id and k.secret == kek.secret for k in self._keks)
        if not held:
            raise KekMissing(
                f"refusing to re-wrap customer keys under KEK {kek.id}: {self.path} does not "
                "hold it (another process rewrote the file, or COMPLAINTS_KEK_PATH names "
                "another file); no key is wrapped under it. See `python -m shared.cli.kek "
                "status`, then run the rotation again"
            )

    # ------------------------------------------------------------------ writing
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's lock (`<file>.lock`): every change of the file does, and so does a
        whole rotation or purge, so that none of them interleave. Reentrant in one thread."""
        with self._writer:
            if self._holding:
                yield
                return
            with _flock(self.path):
                self._holding = True
                try:
                    yield
                finally:
                    self._holding = False

    def add(self, now: datetime) -> Kek:
        """A new KEK, from now on the one that wraps new keys (written atomically)."""
        with self.locked():
            self._read()  # what the file holds now, not what was read before the lock
            if self.staged is not None:
                raise ValueError("a KEK is staged: put it in force (`promote`) instead")
            kek = Kek.new(now)
            _write(self.path, [*self.keks, kek])
            self._read()
        return kek

    def stage(self, now: datetime) -> tuple[Kek, bool]:
        """A new KEK in the file, held but wrapping nothing until `promote`: every process
        that reads the file can unwrap with it before any key is wrapped under it. The staged
        KEK, and whether it is new (one staged before is kept)."""
        with self.locked():
            self._read()
            if (staged := self.staged) is not None:
                return staged, False
            kek = Kek.new(now, staged=True)
            _write(self.path, [*self.keks, kek])
            self._read()
        return kek, True

    def promote(self, now: datetime, kek_id: str) -> Kek:
        """Put the staged KEK `kek_id` in force from `now`: from then on it wraps new keys.
        KekMissing if that is not the KEK staged (another run changed the file meanwhile)."""
        with self.locked():
            self._read()
            staged = self.staged
            if staged is None or staged.id != kek_id:
                raise KekMissing(
                    f"KEK {kek_id} is no longer the staged one in {self.path}: another run "
                    "changed the file; see `python -m shared.cli.kek status` and run it again"
                )
            kek = Kek(staged.id, _second(now), staged.secret)
            _write(self.path, [k for k in self.keks if not k.staged] + [kek])
            self._read()
        return kek

    def remove(self, kek_ids: Iterable[str]) -> None:
        """Destroy these KEKs (never the current one): the file is rewritten without them."""
        gone = set(kek_ids)
        with self.locked():
            self._read()
            keks = self.keks
            if gone & {self.current.id, *(k.id for k in keks if k.staged)}:
                raise ValueError("the current KEK and a staged one cannot be destroyed")
            _write(self.path, [k for k in keks if k.id not in gone])
            self._read()


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line


def _parse(path: Path, number: int, line: str) -> Kek:
    where = f"{path}, line {number}"
    parts = line.split()
    staged = parts[3:] == ["staged"]
    if len(parts) != 3 and not staged:
        raise KekFileError(f"{where}: expected `<id> <created at> <key, base64> [staged]`")
    kek_id, created, encoded = parts[:3]
    try:
        secret = base64.b64decode(encoded, validate=True)
        created_at = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except (binascii.Error, ValueError) as exc:
        raise KekFileError(f"{where}: {exc}") from None
    if len(secret) != KEK_BYTES:
        raise KekFileError(f"{where}: a KEK is {KEK_BYTES} bytes, this one is {len(secret)}")
    if created_at.tzinfo is None:
        raise KekFileError(f"{where}: the creation time needs a time zone (…Z)")
    if fingerprint(secret) != kek_id:
        raise KekFileError(f"{where}: the key does not match its id {kek_id}; is the file damaged?")
    return Kek(kek_id, created_at, secret, staged)


def _write(path: Path, keks: list[Kek], *, exclusive: bool = False) -> None:
    """Write the file whole, mode 600: a temporary file, synced, then renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (FILE_HEADER + "".join(k.line() for k in keks)).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if exclusive and path.exists():
        tmp.unlink()
        raise KekFileError(f"{path} exists already")
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --------------------------------------------------------------------------- the key store
@dataclass(frozen=True)
class Bound:
    """A complaint's binding: the id of the key it was accepted under, and that key (None once
    destroyed)."""

    key_id: str
    key: CustomerKey | None


@dataclass(frozen=True)
class Binding:
    """A binding to write with the events that use it, in their transaction: the complaint,
    its customer, the key, and that key wrapped when it is new (the customer's first)."""

    complaint_id: str
    customer_id: str
    key_id: str
    kek_id: str | None = None
    wrapped: bytes | None = None


class KeyStore(Protocol):
    """Where the customers' keys live, and which key each complaint is bound to (synchronous:
    called from the event store's worker threads)."""

    def prepare(self, complaint_id: str, customer_id: str) -> tuple[Bound, Binding | None]:
        """The key to bind the complaint to, read in one query without writing: the one it
        is bound to already, else the customer's live key, else a new one. The binding to
        write with the complaint's events (None if it is bound already): the event store
        writes it in the same transaction (`shared.store.postgres`, `shared.store.sqlite`)."""
        ...

    def bindings(self, complaint_ids: list[str]) -> dict[str, Bound]:
        """The bindings of these complaints (those bound), in one query."""
        ...

    def bound_key_id(self, complaint_id: str) -> str | None: ...

    def get(self, key_id: str) -> CustomerKey | None:
        """A key by its id; None once destroyed."""
        ...

    def live(self, key_ids: list[str]) -> set[str]:
        """Which of these keys still exist (nothing unwrapped), in one query."""
        ...

    def complaints_of(self, customer_id: str) -> list[str]: ...

    def destroy(self, customer_id: str) -> int:
        """Delete the customer's key (0 or 1 deleted); `scrub` then wipes what is left of it."""
        ...

    def scrub(self) -> None:
        """Wipe what the database engine keeps of deleted rows, as far as it can."""
        ...

    def kek_ids(self) -> set[str]:
        """The KEKs that wrap live keys."""
        ...

    def rewrap(self, kek: Kek, *, batch: int | None = None) -> int:
        """Re-wrap every live key not wrapped by `kek` under it; how many were. Refused
        (KekMissing) while the KEK file does not hold `kek`."""
        ...


class SqlKeyStore:
    """The key store as a table in the event store's database, reached through the event
    store's own connection pool; every key in it is wrapped by a KEK from `keks`."""

    def __init__(self, datastore: Callable[[], Any], settings: Settings, keks: KekFile) -> None:
        self._datastore = datastore
        self._settings = settings
        self._postgres = settings.is_postgres
        self.keks = keks

    @reconnecting  # reads only
    def prepare(self, complaint_id: str, customer_id: str) -> tuple[Bound, Binding | None]:
        with self._transaction(commit=False) as cursor:
            self._execute(
                cursor,
                "SELECT 0 AS rank, c.key_id AS bound, k.key_id, k.customer_id, k.kek_id, "
                f"k.wrapped FROM {BINDING_TABLE} c LEFT JOIN {KEY_TABLE} k "
                "ON k.key_id = c.key_id WHERE c.complaint_id = ? "
                "UNION ALL SELECT 1 AS rank, key_id AS bound, key_id, customer_id, kek_id, "
                f"wrapped FROM {KEY_TABLE} WHERE customer_id = ? ORDER BY rank",
                (complaint_id, customer_id),
            )
            rows = cursor.fetchall()
        if rows and rows[0]["rank"] == 0:
            return self.binding_of(rows[0]), None  # bound before: it keeps its key
        if rows:
            key = self._unwrap(rows[0])
            return Bound(key.key_id, key), Binding(complaint_id, customer_id, key.key_id)
        new = CustomerKey.new(customer_id)
        kek = self.keks.current
        binding = Binding(complaint_id, customer_id, new.key_id, kek.id, kek.wrap(new))
        return Bound(new.key_id, new), binding

    @reconnecting  # reads only
    def bindings(self, complaint_ids: list[str]) -> dict[str, Bound]:
        if not complaint_ids:
            return {}
        with self._transaction(commit=False) as cursor:
            rows = self._bound(cursor, complaint_ids)
        return {str(row["complaint_id"]): self.binding_of(row) for row in rows}

    @reconnecting  # reads only
    def bound_key_id(self, complaint_id: str) -> str | None:
        with self._transaction(commit=False) as cursor:
            self._execute(
                cursor,
                f"SELECT key_id FROM {BINDING_TABLE} WHERE complaint_id = ?",
                (complaint_id,),
            )
            row = cursor.fetchone()
        return str(row["key_id"]) if row is not None else None

    @reconnecting  # reads only
    def get(self, key_id: str) -> CustomerKey | None:
        with self._transaction(commit=False) as cursor:
            self._execute(
                cursor,
                f"SELECT key_id, customer_id, kek_id, wrapped FROM {KEY_TABLE} WHERE key_id = ?",
                (key_id,),
            )
            row = cursor.fetchone()
        return self._unwrap(row) if row is not None else None

    @reconnecting  # reads only
    def live(self, key_ids: list[str]) -> set[str]:
        if not key_ids:
            return set()
        with self._transaction(commit=False) as cursor:
            marks = ", ".join("?" for _ in key_ids)
            self._execute(
                cursor, f"SELECT key_id FROM {KEY_TABLE} WHERE key_id IN ({marks})", tuple(key_ids)
            )
            return {str(row["key_id"]) for row in cursor.fetchall()}

    @reconnecting  # reads only
    def complaints_of(self, customer_id: str) -> list[str]:
        with self._transaction(commit=False) as cursor:
            self._execute(
                cursor,
                f"SELECT complaint_id FROM {BINDING_TABLE} WHERE customer_id = ? "
                "ORDER BY complaint_id",
                (customer_id,),
            )
            return [str(row["complaint_id"]) for row in cursor.fetchall()]

    def destroy(self, customer_id: str) -> int:
        with self._transaction(commit=True) as cursor:
            self._execute(
                cursor,
                f"DELETE FROM {KEY_TABLE} WHERE customer_id = ? RETURNING key_id",
                (customer_id,),
            )
            return len(cursor.fetchall())

    def scrub(self) -> None:
        if self._postgres:
            vacuum(self._settings, KEY_TABLE)
        else:
            checkpoint(self._settings)

    def check(self) -> None:
        """Raise KekMissing unless every KEK that wraps a live key is at hand."""
        for kek_id in sorted(self.kek_ids()):
            self.keks.get(kek_id)

    @reconnecting  # reads only
    def kek_ids(self) -> set[str]:
        with self._transaction(commit=False) as cursor:
            self._execute(cursor, f"SELECT DISTINCT kek_id FROM {KEY_TABLE}", ())
            return {str(row["kek_id"]) for row in cursor.fetchall()}

    def rewrap(self, kek: Kek, *, batch: int | None = None) -> int:
        batch = batch or REWRAP_BATCH
        done = 0
        while True:
            self.keks.require(kek)  # read afresh before each batch
            with self._transaction(commit=False) as cursor:
                self._execute(
                    cursor,
                    f"SELECT key_id, customer_id, kek_id, wrapped FROM {KEY_TABLE} "
                    "WHERE kek_id <> ? ORDER BY key_id LIMIT ?",
                    (kek.id, batch),
                )
                rows = cursor.fetchall()
            rewrapped = [(kek.wrap(self._unwrap(row)), row) for row in rows]
            # A transaction that writes first (SQLite cannot turn a read into a write once
            # another writer has committed); each row only if no one changed it meanwhile.
            with self._transaction(commit=True) as cursor:
                for wrapped, row in rewrapped:
                    self._execute(
                        cursor,
                        f"UPDATE {KEY_TABLE} SET kek_id = ?, wrapped = ? "
                        "WHERE key_id = ? AND kek_id = ?",
                        (kek.id, wrapped, str(row["key_id"]), str(row["kek_id"])),
                    )
            done += len(rows)
            if len(rows) < batch:
                return done

    # ------------------------------------------------------------------ helpers
    def _bound(self, cursor: Any, complaint_ids: list[str]) -> list[Any]:
        self._execute(
            cursor,
            "SELECT c.complaint_id, c.key_id AS bound, k.key_id, k.customer_id, k.kek_id, "
            f"k.wrapped FROM {BINDING_TABLE} c LEFT JOIN {KEY_TABLE} k "
            "ON k.key_id = c.key_id WHERE c.complaint_id IN "
            f"({', '.join('?' * len(complaint_ids))})",
            tuple(complaint_ids),
        )
        return list(cursor.fetchall())

    def binding_of(self, row: Any) -> Bound:
        """A binding from a row of (bound, key_id, customer_id, kek_id, wrapped), the key
        unwrapped (None once destroyed)."""
        key = self._unwrap(row) if row["key_id"] is not None else None
        return Bound(str(row["bound"]), key)

    def _unwrap(self, row: Any) -> CustomerKey:
        kek = self.keks.get(str(row["kek_id"]))
        try:
            return kek.unwrap(str(row["key_id"]), str(row["customer_id"]), bytes(row["wrapped"]))
        except InvalidTag:
            raise KekMissing(
                f"customer key {row['key_id']} does not open with KEK {kek.id}: the key table "
                "or the KEK file was altered"
            ) from None

    @contextmanager
    def _transaction(self, *, commit: bool) -> Iterator[Any]:
        with self._datastore().transaction(commit=commit) as cursor:
            yield cursor

    def _execute(self, cursor: Any, sql: str, params: tuple[Any, ...]) -> None:
        cursor.execute(sql.replace("?", "%s") if self._postgres else sql, params)


#: Attempts at truncating the WAL while readers hold it.
CHECKPOINT_ATTEMPTS = 3


def vacuum(settings: Settings, *tables: str) -> None:
    """PostgreSQL: VACUUM these tables, so that no dead row version keeps what was deleted or
    rewritten. VACUUM cannot run inside a transaction: a connection of its own, in autocommit.
    (The service's role must own the tables: for another role PostgreSQL skips them with a
    warning.)"""
    url = settings.url.set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)
    with closing(psycopg.connect(dsn, autocommit=True, connect_timeout=5)) as conn:
        for table in tables:
            conn.execute(f"VACUUM {table}")


def checkpoint(settings: Settings, *, vacuum: bool = False) -> bool:
    """SQLite: copy the WAL into the database file and truncate it to nothing, so frames that
    held deleted rows are gone (`vacuum`: rebuild the file first, which drops its free pages).
    Whether the WAL was truncated; a WAL still in use by readers is left for the next one."""
    database = settings.url.database
    if not database or database == ":memory:":
        return True
    with closing(sqlite3.connect(database, timeout=10, isolation_level=None)) as conn:
        conn.execute("PRAGMA secure_delete=ON")
        if vacuum:
            conn.execute("VACUUM")
        for _ in range(CHECKPOINT_ATTEMPTS):
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
    log.warning("the SQLite WAL is busy and was not truncated now; the next erasure does it")
    return False


def destroyable(keks: KekFile, in_use: set[str], now: datetime, retention: timedelta) -> list[Kek]:
    """The KEKs superseded longer than `retention` ago that wrap no live key."""
    return [
        kek
        for kek in keks.in_force[:-1]
        if kek.id not in in_use
        and (due := keks.destroyed_from(kek, retention)) is not None
        and due <= now
    ]
