"""Verify an audit export against signed checkpoints — standalone, for a regulator's laptop.

    python verify.py export.ndjson checkpoints.json --key operator.pem [--known FILE ...]

Needs only the Python standard library and `cryptography`; imports nothing else from the
complaint platform, so it can be copied out and read on its own. It answers `valid` (exit 0),
or names the first bad line and why, or says the export is incomplete (exit 1); unreadable
files or key: exit 2; no `--key`: exit 3, never `valid` (whoever can change the files could
re-sign them with a key of their own).

What it checks:
- every line is a JSON object of the documented shape, positions strictly increase;
- each line's `hash` is SHA-256 over the previous line's hash and this line's canonical record,
  and its `prev_hash` is the previous line's `hash` (one chain over the whole store);
- personal fields enter the record as salted SHA-256 digests: with the line's `salt` the
  plaintext is checked against them, and after erasure the digest alone still verifies;
- every checkpoint's Ed25519 signature is by the pinned key (`--key`), or by a successor key
  that a checkpoint signed by its predecessor announced (key rotation; chains of successors
  allowed); a key signs no checkpoint after the one announcing its successor. Checkpoints from
  before the pinned key took over (up to the one announcing it) are not checked;
- every checkpoint inside the export's range matches the hash of the line at its position;
- the trailer states the export complete (the chain held every event committed before the
  period's end when it was made) and names its last position;
- the trailer line is present, signed by the pinned key or an announced successor (a retired
  key only for exports ending no later than its retirement), and names the period, the number
  of lines and both ends of the chain: an export cut short, padded or begun late is caught (an
  export from the beginning must start at the genesis hash);
- `--known`: checkpoints received earlier (the witness's copies) lie on the exported chain: one
  inside the export's range must match the line at its position, one the checkpoints file
  also holds must carry the same hash, and one the export's period should contain but does
  not (its position lies outside the lines though it was signed before the period's end, or
  before the first line of an export from the beginning) fails. Any other is outside the
  export and reported as not checked (export the period that holds it to check it);
- no JSON object repeats a key (a reader could otherwise be shown another value).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GENESIS = "0" * 64
#: /2: callback comments, evidence and archive summaries joined the personal fields.
SCHEME = "complaints-audit-chain/2"

#: Paths of personal data inside event data: committed by salted digest, never by plaintext.
#: `*` stands for every item of a list.
PERSONAL_FIELDS: tuple[tuple[str, ...], ...] = (
    ("intake", "customer", "name"),
    ("intake", "customer", "phone"),
    ("intake", "customer", "email"),
    ("intake", "service_number"),
    ("intake", "description"),
    ("intake", "demand"),
    ("intake", "evidence", "*", "summary"),
    ("summary",),
    ("comments",),
    ("handover", "last_callback", "comments"),
)

RECORD_KEYS = (
    "position",
    "aggregate",
    "aggregate_id",
    "complaint_id",
    "version",
    "type",
    "at",
    "ctx",
    "data",
)


#: Every line of the export has exactly these fields (the trailer excepted).
LINE_KEYS = frozenset({*RECORD_KEYS, "salt", "hash", "prev_hash"})


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


SALT = re.compile(r"[0-9a-f]{32}")


def digest(salt: str, value: str) -> str:
    """SHA-256 of salt and value; the salt only in its one canonical form (lowercase hex)."""
    if not isinstance(salt, str) or not SALT.fullmatch(salt):
        raise ValueError("the salt is not 32 lowercase hex digits")
    return hashlib.sha256(bytes.fromhex(salt) + value.encode("utf-8")).hexdigest()


def _places(data: Any, path: tuple[str, ...]) -> Iterator[tuple[dict[str, Any], str]]:
    """(parent, key) of every value present at `path`."""
    head, rest = path[0], path[1:]
    if head == "*":
        for item in data if isinstance(data, list) else ():
            yield from _places(item, rest)
    elif isinstance(data, dict) and head in data:
        if rest:
            yield from _places(data[head], rest)
        else:
            yield data, head


def committed_data(data: Any, salt: str | None) -> Any:
    """The event data as the chain commits to it: personal fields as salted digests."""
    if not isinstance(data, dict):
        return data
    result = json.loads(json.dumps(data))
    for path in PERSONAL_FIELDS:
        for parent, key in _places(result, path):
            value = parent[key]
            if isinstance(value, str):
                if salt is None:
                    raise ValueError(f"{'.'.join(path)} is plaintext but the line has no salt")
                parent[key] = {"sha256": digest(salt, value)}
            elif value is None or (isinstance(value, dict) and set(value) == {"sha256"}):
                continue  # absent, or erased: the digest stands for it
            else:
                raise ValueError(f"{'.'.join(path)} is neither text nor a digest")
    return result


def record_hash(prev_hash: str, line: dict[str, Any]) -> str:
    return link_hash(prev_hash, committed_record(line))


def committed_record(line: dict[str, Any]) -> bytes:
    """What the chain commits to of one line: its record, personal data as salted digests."""
    record = {key: line[key] for key in RECORD_KEYS}
    salt = line.get("salt")
    if salt is not None:
        digest(salt, "")  # refuses any salt not in canonical form
    record["data"] = committed_data(line["data"], salt)
    return canonical_json(record)


def link_hash(prev_hash: str, committed: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + committed).hexdigest()


def fingerprint(public_key: Any) -> str:
    """A public key's SHA-256 fingerprint: lowercase hex of SHA-256 over its DER-encoded
    SubjectPublicKeyInfo (what `openssl pkey -pubin -outform DER | sha256sum` prints)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_public_key(pem: str | bytes, what: str = "the key") -> Any:
    """An Ed25519 public key from PEM; ValueError saying what is wrong otherwise."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    if b"PRIVATE KEY" in data:
        raise ValueError(f"{what} is a private key: pin the operator's public key instead")
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} is not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{what} is not an Ed25519 public key")
    return key


def checkpoint_message(
    position: int, chain_hash: str, signed_at: str, successor: str | None = None
) -> bytes:
    """What a checkpoint's signature covers; `successor`: the fingerprint of the key that
    signs from then on, when this checkpoint announces one (signed by the key it retires)."""
    message: dict[str, Any] = {
        "scheme": SCHEME,
        "position": position,
        "hash": chain_hash,
        "signed_at": signed_at,
    }
    if successor is not None:
        message["successor"] = successor
    return canonical_json(message)


#: The trailer of exports made before trailers stated their completeness: still verifiable.
LEGACY_TRAILER_KEYS = frozenset(
    {"from", "to", "count", "first_prev_hash", "last_hash", "signed_at", "signature"}
)
#: `last_position`: the position of the last line (null if none). `complete`: whether the
#: chain held every event committed before the period's end (`to`, capped at the time of the
#: export) when the export was made.
TRAILER_KEYS = LEGACY_TRAILER_KEYS | {"last_position", "complete"}


def trailer_message(trailer: dict[str, Any]) -> bytes:
    """What the export's signature covers: its period, its size, both ends of its chain and
    whether it is complete (every field but the signature)."""
    keys = TRAILER_KEYS if "complete" in trailer else LEGACY_TRAILER_KEYS
    signed = {key: trailer[key] for key in keys - {"signature"}}
    return canonical_json({"scheme": SCHEME, "kind": "export", **signed})


@dataclass(frozen=True)
class Verdict:
    valid: bool
    message: str
    line: int | None = None
    #: What else a reader should know (checkpoints not checked, the keys that signed, ...).
    notes: tuple[str, ...] = ()
    #: False when no key was pinned: then `valid` is False whatever the files say.
    pinned: bool = True


class Invalid(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("a key appears twice")
    return dict(pairs)


def _lines(raw: Iterable[str | bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, text in enumerate(raw, start=1):
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise Invalid(number, "not UTF-8") from exc
        if not text.strip():
            raise Invalid(number, "empty line")
        try:
            value = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except ValueError as exc:
            raise Invalid(number, f"not JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise Invalid(number, "not a JSON object")
        yield number, value


def _signed(key: Any, signature: Any, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _short(fp: str) -> str:
    return fp[:16] + "…"


@dataclass
class _Tenure:
    """A key the pinned key vouches for, and the position of the checkpoint that announced
    its successor (None while it is the newest)."""

    key: Any
    fingerprint: str
    until: int | None = None


@dataclass
class _Trust:
    heads: dict[int, str]
    tenures: list[_Tenure]
    unchecked: int  # checkpoints from before the pinned key took over


def _file_key(checkpoints: dict[str, Any]) -> Any | None:
    """The key the checkpoints file names (a hint only: never trusted for that)."""
    try:
        return load_public_key(checkpoints["public_key"])
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def _successor(checkpoint: dict[str, Any], position: int) -> tuple[Any, str] | None:
    successor = checkpoint.get("successor")
    if successor is None:
        return None
    where = f"checkpoint at position {position}"
    if not isinstance(successor, dict) or not isinstance(successor.get("public_key"), str):
        raise Invalid(None, f"{where}: a malformed successor (want public_key and fingerprint)")
    try:
        key = load_public_key(successor["public_key"], "its successor")
    except ValueError as exc:
        raise Invalid(None, f"{where}: {exc}") from exc
    found = fingerprint(key)
    if successor.get("fingerprint", found) != found:
        raise Invalid(None, f"{where}: the successor's fingerprint is not that of its key")
    return key, found


def _parsed_checkpoints(
    checkpoints: Any, what: str = "checkpoints", *, unique: bool = True
) -> list[tuple[int, str, str, dict[str, Any]]]:
    """(position, hash, signed_at, the checkpoint) of every checkpoint, by position; with
    `unique`, no position twice."""
    entries = checkpoints.get("checkpoints") if isinstance(checkpoints, dict) else checkpoints
    if not isinstance(entries, list):
        raise Invalid(None, f"{what}: want a JSON object with a `checkpoints` list")
    parsed = []
    for entry in entries:
        try:
            position, chain_hash = entry["position"], entry["hash"]
            signed_at = entry["signed_at"]
            if not isinstance(position, int) or not isinstance(chain_hash, str):
                raise TypeError("position must be a number and hash a string")
            _instant(signed_at, "signed_at")
        except (KeyError, TypeError, ValueError, Invalid) as exc:
            raise Invalid(None, f"{what}: a malformed checkpoint ({exc})") from exc
        parsed.append((position, chain_hash, signed_at, entry))
    parsed.sort(key=lambda item: item[0])
    if unique and len({p for p, *_ in parsed}) != len(parsed):
        raise Invalid(None, f"{what}: two checkpoints at one position")
    return parsed


def _trusted_checkpoints(pinned: Any, checkpoints: dict[str, Any]) -> _Trust:
    """Walk the checkpoints in position order from the pinned key: each must be signed by the
    key in force; one that announces a successor hands over to it."""
    parsed = _parsed_checkpoints(checkpoints)
    pinned_fp = fingerprint(pinned)
    start = 0  # checkpoints up to the one announcing the pinned key are its predecessors'
    for index, (position, _, _, checkpoint) in enumerate(parsed):
        successor = _successor(checkpoint, position)
        if successor is not None and successor[1] == pinned_fp:
            start = index + 1
            break
    tenures = [_Tenure(pinned, pinned_fp)]
    heads: dict[int, str] = {}
    file_key = _file_key(checkpoints)
    for position, chain_hash, signed_at, checkpoint in parsed[start:]:
        current = tenures[-1]
        successor = _successor(checkpoint, position)
        message = checkpoint_message(
            position, chain_hash, signed_at, successor[1] if successor else None
        )
        if not _signed(current.key, checkpoint.get("signature"), message):
            whose = "the pinned key" if len(tenures) == 1 else "its announced successor"
            by = ""
            if file_key is not None and _signed(file_key, checkpoint.get("signature"), message):
                by = f"; it is signed by key {_short(fingerprint(file_key))}, never announced"
            raise Invalid(
                None,
                f"checkpoint at position {position}: not signed by {whose} "
                f"{_short(current.fingerprint)}{by} (forged, altered, or a rotation that was "
                "not announced)",
            )
        heads[position] = chain_hash
        if successor is not None:
            current.until = position
            tenures.append(_Tenure(*successor))
    return _Trust(heads, tenures, start)


def _check_trailer(
    number: int,
    line: dict[str, Any],
    trust: _Trust,
    count: int,
    first_prev: str | None,
    last_hash: str | None,
    last_position: int | None,
) -> _Tenure:
    trailer = line["trailer"]
    if (
        set(line) != {"trailer"}
        or not isinstance(trailer, dict)
        or set(trailer) not in (TRAILER_KEYS, LEGACY_TRAILER_KEYS)
    ):
        raise Invalid(number, "a malformed trailer")
    message = trailer_message(trailer)
    signer = next((t for t in trust.tenures if _signed(t.key, trailer["signature"], message)), None)
    if signer is None:
        raise Invalid(
            number,
            "the trailer's signature is not by the pinned key nor an announced successor "
            "(export altered, cut, or re-signed by another key)",
        )
    if signer.until is not None and last_position is not None and last_position > signer.until:
        raise Invalid(
            number,
            f"the trailer is signed by key {_short(signer.fingerprint)}, retired at position "
            f"{signer.until}, but the export runs to position {last_position}",
        )
    if trailer["count"] != count:
        raise Invalid(number, f"the signed trailer counts {trailer['count']} lines, not {count}")
    if trailer["first_prev_hash"] != first_prev or trailer["last_hash"] != last_hash:
        raise Invalid(number, "the lines do not run from the signed first to the signed last")
    if trailer["from"] is None and count and first_prev != GENESIS:
        raise Invalid(number, "an export from the beginning must start at the genesis")
    if "complete" in trailer:
        if trailer["last_position"] != last_position:
            raise Invalid(number, "the signed trailer names another last position")
        if not isinstance(trailer["complete"], bool):
            raise Invalid(number, "the trailer's `complete` is not true or false")
    return signer


def _instant(text: Any, what: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except (TypeError, ValueError) as exc:
        raise Invalid(None, f"{what}: not a time ({exc})") from exc
    if at.tzinfo is None:
        raise Invalid(None, f"{what}: a time without its UTC offset")
    return at


def _check_known(
    known: dict[int, tuple[str, str]],
    seen: set[int],
    trailer: dict[str, Any],
    first: int | None,
    last: int | None,
) -> list[str]:
    """Known checkpoints the lines did not meet: fail those the export should hold, and
    note the others as not checked."""
    end = _instant(trailer["to"] or trailer["signed_at"], "the trailer's period end")
    outside = []
    for position, (_, signed_at) in sorted(known.items()):
        if position in seen:
            continue
        signed_before_end = _instant(signed_at, f"known checkpoint {position}") < end
        if first is not None and last is not None and first <= position <= last:
            raise Invalid(None, f"the event at known checkpoint {position} is missing")
        if (last is not None and position > last and signed_before_end) or (
            trailer["from"] is None and (first is None or position < first) and signed_before_end
        ):
            raise Invalid(
                None,
                f"the checkpoint at position {position}, known from {signed_at}, lies within "
                "the export's period but not on its chain (history rewritten or cut)",
            )
        outside.append(position)
    if not outside:
        return []
    shown = ", ".join(str(p) for p in outside[:5]) + (", …" if len(outside) > 5 else "")
    return [
        f"{len(outside)} known checkpoint(s) outside this export, not checked (positions "
        f"{shown}): export the period that holds them to check them"
    ]


def _known_heads(known: Any) -> dict[int, tuple[str, str]]:
    """Position → (hash, the earliest signed_at) of the known checkpoints; copies kept more
    than once (several fetches of the checkpoints) must agree."""
    heads: dict[int, tuple[str, str]] = {}
    for position, chain_hash, signed_at, _ in _parsed_checkpoints(
        known, "known checkpoints", unique=False
    ):
        if position in heads and heads[position][0] != chain_hash:
            raise Invalid(
                None,
                f"the known checkpoints disagree at position {position} (history rewritten "
                "between two of them)",
            )
        if position not in heads or _instant(signed_at, "signed_at") < _instant(
            heads[position][1], "signed_at"
        ):
            heads[position] = (chain_hash, signed_at)
    return heads


def _pinned_key(key: Any) -> Any:
    if isinstance(key, str | bytes):
        return load_public_key(key, "the pinned key")
    return key


def verify(
    export_lines: Iterable[str | bytes],
    checkpoints: dict[str, Any],
    *,
    key: Any,
    known: Any = None,
) -> Verdict:
    """Verify an export against the checkpoints, trusting only `key` (PEM, or an Ed25519
    public key) and the successors it announced. `key=None`: check against the key the
    checkpoints file names, but never answer valid. `known`: checkpoints received earlier
    (the checkpoints file's format, or its list)."""
    if key is None:
        return _unpinned(export_lines, checkpoints, known)
    try:
        pinned = _pinned_key(key)
        trust = _trusted_checkpoints(pinned, checkpoints)
        heads = trust.heads
        known_heads = _known_heads(known) if known is not None else {}
        for position, (known_hash, signed_at) in known_heads.items():
            if position in heads and heads[position] != known_hash:
                raise Invalid(
                    None,
                    f"the checkpoint at position {position} contradicts the one known from "
                    f"{signed_at} (history rewritten and re-signed)",
                )
        count, first, last, prev_line_hash, trailer = 0, None, None, None, None
        first_prev: str | None = None
        seen_heads: set[int] = set()
        seen_known: set[int] = set()
        signer: _Tenure | None = None
        for number, line in _lines(export_lines):
            if trailer is not None:
                raise Invalid(number, "a line after the trailer")
            if "trailer" in line:
                signer = _check_trailer(
                    number, line, trust, count, first_prev, prev_line_hash, last
                )
                trailer = line["trailer"]
                continue
            if set(line) != LINE_KEYS:
                missing, extra = LINE_KEYS - set(line), set(line) - LINE_KEYS
                raise Invalid(
                    number, f"fields missing {sorted(missing)}, unexpected {sorted(extra)}"
                )
            position = line["position"]
            if not isinstance(position, int) or (last is not None and position <= last):
                raise Invalid(number, "positions are not strictly increasing")
            if prev_line_hash is not None and line["prev_hash"] != prev_line_hash:
                raise Invalid(number, "prev_hash does not link to the line before")
            try:
                expected = record_hash(str(line["prev_hash"]), line)
            except (ValueError, TypeError, AttributeError) as exc:
                raise Invalid(number, f"cannot hash the record: {exc}") from exc
            if expected != line["hash"]:
                raise Invalid(number, "hash does not match the record (altered event)")
            if position in heads:
                if heads[position] != line["hash"]:
                    raise Invalid(number, f"does not match the checkpoint at {position}")
                seen_heads.add(position)
            if position in known_heads:
                known_hash, signed_at = known_heads[position]
                if known_hash != line["hash"]:
                    raise Invalid(
                        number,
                        f"does not match the checkpoint at {position} known from {signed_at} "
                        "(history rewritten)",
                    )
                seen_known.add(position)
            if first is None:
                first, first_prev = position, line["prev_hash"]
            last, prev_line_hash = position, line["hash"]
            count += 1
        if trailer is None or signer is None:
            raise Invalid(None, "the export ends without its trailer (truncated)")
        if first is not None and last is not None:
            for position in heads:
                if first <= position <= last and position not in seen_heads:
                    raise Invalid(None, f"the event at checkpoint {position} is missing")
        notes = _check_known(known_heads, seen_known, trailer, first, last)
        if trust.unchecked:
            notes.insert(
                0,
                f"{trust.unchecked} checkpoint(s) from before the pinned key took over, not "
                "checked",
            )
        keys = " → ".join(_short(t.fingerprint) for t in trust.tenures)
        notes.insert(
            0, f"keys: {keys} (pinned first); the trailer is signed by {_short(signer.fingerprint)}"
        )
        message = f"{count} events, {len(seen_heads)} checkpoint(s) matched"
        if known is not None:
            message += f", {len(seen_known)} known checkpoint(s) matched"
        end = trailer["to"] or trailer["signed_at"]
        if "complete" not in trailer:
            notes.append(
                "the trailer does not say whether the export is complete (made before trailers did)"
            )
        elif not trailer["complete"]:
            return Verdict(
                False,
                f"incomplete: {message}, but the chain had not reached every event committed "
                f"before {end} when the export was made: export the period again",
                notes=tuple(notes),
            )
        else:
            notes.append(
                f"complete: every event committed before {end} is here (up to "
                f"position {trailer['last_position']})"
            )
        return Verdict(True, f"valid: {message}", notes=tuple(notes))
    except Invalid as bad:
        where = f"line {bad.line}: " if bad.line is not None else ""
        return Verdict(False, f"invalid: {where}{bad.message}", bad.line)


def _unpinned(
    export_lines: Iterable[str | bytes], checkpoints: dict[str, Any], known: Any
) -> Verdict:
    """Without a pinned key nothing is valid: say which key the files name, and whether they
    are at least consistent under it."""
    found = _file_key(checkpoints)
    how = (
        "Pin the operator's key: fetch GET /audit/public-key, compare its fingerprint with the "
        "one the operator gives you through a channel they do not control, save its "
        "public_key as a PEM file and pass --key FILE."
    )
    if found is None:
        return Verdict(
            False, f"not verified: no --key, and the checkpoints name no key. {how}", pinned=False
        )
    under = verify(export_lines, checkpoints, key=found, known=known)
    consistent = (
        "the files are consistent under it"
        if under.valid
        else f"even under it they are {under.message}"
    )
    return Verdict(
        False,
        f"not verified: no --key. The checkpoints name the key with SHA-256 fingerprint "
        f"{fingerprint(found)}, and {consistent}; but anyone who can change the files can "
        f"re-sign them with a key of their own. {how}",
        pinned=False,
    )


def _read_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=_no_duplicate_keys)
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ValueError(f"{what} {path} is not JSON ({exc})") from exc


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="verify.py",
        description="Verify an audit export against the signed checkpoints and a pinned key.",
        epilog="exit status: 0 valid, 1 invalid or incomplete, 2 unreadable input, 3 no --key "
        "(never valid)",
    )
    parser.add_argument("export", help="the export (NDJSON) from GET /audit/export")
    parser.add_argument("checkpoints", help="the checkpoints (JSON) from GET /audit/checkpoints")
    parser.add_argument(
        "--key",
        metavar="PEM",
        help="the operator's public key, pinned earlier (GET /audit/public-key, its "
        "fingerprint compared out of band)",
    )
    parser.add_argument(
        "--known",
        metavar="FILE",
        nargs="+",
        action="extend",
        help="checkpoints received earlier (files in the format of CHECKPOINTS, e.g. every "
        "copy a witness kept): they must lie on the exported chain",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        key = None
        if args.key is not None:
            try:
                with open(args.key, "rb") as f:
                    key = load_public_key(f.read(), f"--key {args.key}")
            except OSError as exc:
                raise ValueError(f"cannot read --key {args.key}: {exc.strerror}") from exc
        checkpoints = _read_json(args.checkpoints, "checkpoints")
        if not isinstance(checkpoints, dict):
            raise ValueError(f"checkpoints {args.checkpoints} is not a JSON object")
        known = None
        if args.known:
            known = []
            for path in args.known:
                kept = _read_json(path, "--known")
                entries = kept.get("checkpoints") if isinstance(kept, dict) else kept
                if not isinstance(entries, list):
                    raise ValueError(f"--known {path} has no `checkpoints` list")
                known.extend(entries)
        with open(args.export, "rb") as export:
            verdict = verify(export, checkpoints, key=key, known=known)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in verdict.notes:
        print(f"note: {note}")
    print(verdict.message)
    if not verdict.pinned:
        return 3
    return 0 if verdict.valid else 1


if __name__ == "__main__":
    sys.exit(main())
