"""Which recorded fields are the customer's personal data, and how erased data looks.

Personal fields are stored sealed with the customer's own key (`shared.store.sealing`), so
destroying that key erases them everywhere at once. What is sealed: the customer's name, phone
and e-mail, the service number (for mobile complaints it is the phone number), and the free
text that holds what the customer said or sent: the description, the demand, evidence
summaries, callback comments and the archive summary. Staff's account of the handling
(findings, replies, reasons) and every code, time and id stay readable, so an erased complaint
still replays and still counts in the reports.

No rule of the aggregate reads personal data. So a complaint read from the store carries its
personal fields sealed (`Sealed`): into its snapshots, and into events that copy them (a
handover), without opening them. Only what shows them opens them (`opened`, `text_of`): a
view, a message to the customer; and the summary projection, the contact phone and the
service number alone, to store their keyed digests (`phone_digest`). Reading a complaint of
1,000 events for a command opens nothing; showing it opens each field it shows once.

Paths are tuples of keys; `*` stands for every item of a list.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from shared.domain.chain import json_default

Path = tuple[str, ...]

#: Personal fields in the data of a complaint's events. The audit verifier keeps its own copy
#: (`shared.audit.verify.PERSONAL_FIELDS`, it must stand alone); a test keeps the two equal.
EVENT_FIELDS: tuple[Path, ...] = (
    ("intake", "customer", "name"),
    ("intake", "customer", "phone"),
    ("intake", "customer", "email"),
    ("intake", "service_number"),
    ("intake", "description"),
    ("intake", "demand"),
    ("intake", "evidence", "*", "summary"),
    ("summary",),  # EvidenceAdded, Archived
    ("comments",),  # CallbackRecorded, CallbackUnreached
    ("handover", "last_callback", "comments"),  # Escalated
)

#: The same facts where a snapshot keeps them: the aggregate's state.
STATE_FIELDS: tuple[Path, ...] = (
    *(path for path in EVENT_FIELDS if path[0] == "intake"),
    ("evidence", "*", "summary"),
    ("callbacks", "*", "comments"),
    ("callback_attempts", "*", "comments"),
    ("archive_summary",),
)

#: How an erased value reads.
ERASED_TEXT = "[erased]"

T = TypeVar("T")


class Erased(str):
    """A personal value whose key was destroyed: reads as "[erased]" and keeps the salted
    SHA-256 digest the audit chain committed to, so the chain still verifies."""

    sha256: str

    def __new__(cls, sha256: str) -> Erased:
        value = super().__new__(cls, ERASED_TEXT)
        value.sha256 = sha256
        return value

    def __reduce__(self) -> tuple[Any, ...]:
        return (Erased, (self.sha256,))


class Sealed:
    """A personal value as the store keeps it, not opened (`shared.store.sealing` makes them,
    with what opens them). `open()` gives its text. Two are equal when they hold the same text
    of the same customer: their salted digests (the ones the audit chain commits to) are equal.
    Neither its text nor anything that opens it shows in its repr."""

    __slots__ = ("sha256",)

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256

    def open(self) -> str:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return "Sealed(…)"


def text_of(value: T) -> T | str:
    """A personal value as shown: opened if sealed (erased stays erased)."""
    return value.open() if isinstance(value, Sealed) else value


def opened(data: T, paths: tuple[Path, ...]) -> T:
    """`data` with every sealed value at `paths` opened, for showing. `data` itself stays as
    it is: the dicts and lists on the way to an opened value are new, the rest is shared."""
    for path in paths:
        data = _opened_at(data, path)
    return data


def _opened_at(data: Any, path: Path) -> Any:
    head, rest = path[0], path[1:]
    if head == "*":
        if not isinstance(data, list):
            return data
        if len(rest) == 1:  # a field of every item: the common case, inline
            name = rest[0]
            return [
                {**item, name: item[name].open()}
                if isinstance(item, dict) and isinstance(item.get(name), Sealed)
                else item
                for item in data
            ]
        return [_opened_at(item, rest) for item in data]
    if not isinstance(data, dict) or head not in data:
        return data
    value = data[head]
    new = _opened_at(value, rest) if rest else text_of(value)
    return data if new is value else {**data, head: new}


def replace(data: Any, path: Path, change: Callable[[Any], Any]) -> None:
    """Replace, in place, every value at `path` in `data` that is present by `change(value)`
    (one walk, without the generator `leaves` needs: a snapshot holds a field per event)."""
    head, rest = path[0], path[1:]
    if head == "*":
        if not isinstance(data, list):
            return
        if len(rest) == 1:  # a field of every item: the common case, inline
            name = rest[0]
            for item in data:
                if isinstance(item, dict) and name in item:
                    item[name] = change(item[name])
        else:
            for item in data:
                replace(item, rest, change)
        return
    if not isinstance(data, dict) or head not in data:
        return
    if rest:
        replace(data[head], rest, change)
    else:
        data[head] = change(data[head])


def leaves(data: Any, path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """(parent, key) of every value at `path` in `data` that is present."""
    if not path:
        return
    head, rest = path[0], path[1:]
    if head == "*":
        for item in data if isinstance(data, list) else ():
            yield from leaves(item, rest)
        return
    if not isinstance(data, dict) or head not in data:
        return
    if not rest:
        yield data, head
    else:
        yield from leaves(data[head], rest)


def copied_along(data: dict[str, Any], paths: tuple[Path, ...]) -> dict[str, Any]:
    """A copy of `data` in which every dict and list on the way to a field at `paths` is new,
    so those fields can be replaced without touching `data`; everything else is shared (a
    deep copy of a whole event cost more than sealing it)."""
    copied = dict(data)
    for path in paths:
        _copy_path(copied, path)
    return copied


def _copy_path(container: Any, path: Path) -> None:
    head, rest = path[0], path[1:]
    if not rest:
        return
    children: Iterable[Any]
    if head == "*":
        children = range(len(container)) if isinstance(container, list) else range(0)
    else:
        children = [head] if isinstance(container, dict) and head in container else []
    for at in children:
        child = container[at]
        if isinstance(child, dict | list):
            container[at] = child = child.copy()
            _copy_path(child, rest)


def as_record(value: Any) -> Any:
    """`value` as recorded: JSON types only (times in ISO 8601, ids and money as text, as
    `json_default` writes them), every erased field as the digest the chain committed to.

    One walk gives what `json.loads(json.dumps(value, default=json_default))` would, at a
    fraction of the cost: every event of an export and of the chain goes through here."""
    if value is None or type(value) in _JSON_SCALARS:
        return value
    if isinstance(value, dict):
        return {k if type(k) is str else _key(k): as_record(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_record(v) for v in value]
    if isinstance(value, Erased | Sealed):  # what the chain commits to for either
        return {"sha256": value.sha256}
    if isinstance(value, str):  # a StrEnum member and the like: its text
        return str.__str__(value)
    if isinstance(value, bool | int | float):
        return json.loads(json.dumps(value))
    return json_default(value)


_JSON_SCALARS = (str, int, float, bool)


def _key(key: Any) -> str:
    """A non-text dict key as JSON writes it (1 → "1", True → "true")."""
    return str(json.loads(json.dumps({key: None})).popitem()[0])


def is_erased(value: Any) -> bool:
    return isinstance(value, Erased)


def is_plaintext(value: Any) -> bool:
    """A personal value still readable: text, not erased."""
    return isinstance(value, str) and not isinstance(value, Erased)


def phone_key(value: str) -> str:
    """A phone or service number as lists look it up: its letters and digits alone, letters in
    capitals ("138-1234 1234" and "13812341234" are one number). No country prefix is dropped:
    intake keeps numbers as the customer gave them, and so does the lookup."""
    return "".join(c for c in value if c.isascii() and c.isalnum()).upper()


def phone_digest(value: Any, secret: bytes) -> str | None:
    """The keyed digest (HMAC-SHA256 under the index key) by which the read model finds a
    complaint by phone or service number without holding the number: None for a value that is
    erased, missing or has nothing to look up by. The projection and the lookup both use it."""
    if isinstance(value, Sealed):
        value = value.open()
    if not is_plaintext(value):
        return None
    key = phone_key(value)
    if not key:
        return None
    message = b"complaints-phone-v1\n" + key.encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()
