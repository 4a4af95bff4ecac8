"""Verify an audit export against signed checkpoints — standalone, for a regulator's laptop.

    python verify.py export.ndjson checkpoints.json

Needs only the Python standard library and `cryptography`; imports nothing else from the
complaint platform, so it can be copied out and read on its own. It answers `valid` (exit 0)
or names the first bad line and why (exit 1).

What it checks:
- every line is a JSON object of the documented shape, positions strictly increase;
- each line's `hash` is SHA-256 over the previous line's hash and this line's canonical record,
  and its `prev_hash` is the previous line's `hash` (one chain over the whole store);
- personal fields enter the record as salted SHA-256 digests: with the line's `salt` the
  plaintext is checked against them, and after erasure the digest alone still verifies;
- every checkpoint's Ed25519 signature is valid under the published key, and every checkpoint
  inside the export's range matches the hash of the line at its position;
- the trailer line is present, signed with the same key, and names the period, the number of
  lines and both ends of the chain: an export cut short, padded or begun late is caught (an
  export from the beginning must start at the genesis hash);
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


def checkpoint_message(position: int, chain_hash: str, signed_at: str) -> bytes:
    return canonical_json(
        {"scheme": SCHEME, "position": position, "hash": chain_hash, "signed_at": signed_at}
    )


TRAILER_KEYS = frozenset(
    {"from", "to", "count", "first_prev_hash", "last_hash", "signed_at", "signature"}
)


def trailer_message(trailer: dict[str, Any]) -> bytes:
    """What the export's signature covers: its period, its size, and both ends of its chain."""
    signed = {key: trailer[key] for key in TRAILER_KEYS - {"signature"}}
    return canonical_json({"scheme": SCHEME, "kind": "export", **signed})


@dataclass(frozen=True)
class Verdict:
    valid: bool
    message: str
    line: int | None = None


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


def _public_key(checkpoints: dict[str, Any]) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(checkpoints["public_key"].encode("ascii"))
    except (KeyError, ValueError, AttributeError) as exc:
        raise Invalid(None, f"checkpoints: unreadable public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise Invalid(None, "checkpoints: the public key is not Ed25519")
    return key


def _signed(key: Any, signature: Any, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _verified_checkpoints(key: Any, checkpoints: dict[str, Any]) -> dict[int, str]:
    heads: dict[int, str] = {}
    for checkpoint in checkpoints.get("checkpoints", []):
        try:
            position, chain_hash = int(checkpoint["position"]), str(checkpoint["hash"])
            message = checkpoint_message(position, chain_hash, str(checkpoint["signed_at"]))
            valid = _signed(key, checkpoint["signature"], message)
        except (KeyError, ValueError, TypeError, AttributeError):
            valid = False
        if not valid:
            raise Invalid(
                None, f"checkpoint at position {checkpoint.get('position')}: bad signature"
            )
        heads[position] = chain_hash
    return heads


def _check_trailer(
    number: int,
    line: dict[str, Any],
    key: Any,
    count: int,
    first_prev: str | None,
    last_hash: str | None,
) -> None:
    trailer = line["trailer"]
    if set(line) != {"trailer"} or not isinstance(trailer, dict) or set(trailer) != TRAILER_KEYS:
        raise Invalid(number, "a malformed trailer")
    if not _signed(key, trailer["signature"], trailer_message(trailer)):
        raise Invalid(number, "the trailer's signature is not valid (export altered or cut)")
    if trailer["count"] != count:
        raise Invalid(number, f"the signed trailer counts {trailer['count']} lines, not {count}")
    if trailer["first_prev_hash"] != first_prev or trailer["last_hash"] != last_hash:
        raise Invalid(number, "the lines do not run from the signed first to the signed last")
    if trailer["from"] is None and count and first_prev != GENESIS:
        raise Invalid(number, "an export from the beginning must start at the genesis")


def verify(export_lines: Iterable[str | bytes], checkpoints: dict[str, Any]) -> Verdict:
    try:
        key = _public_key(checkpoints)
        heads = _verified_checkpoints(key, checkpoints)
        count, first, last, prev_line_hash, trailer_seen = 0, None, None, None, False
        first_prev: str | None = None
        seen_heads: set[int] = set()
        for number, line in _lines(export_lines):
            if trailer_seen:
                raise Invalid(number, "a line after the trailer")
            if "trailer" in line:
                _check_trailer(number, line, key, count, first_prev, prev_line_hash)
                trailer_seen = True
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
            if first is None:
                first, first_prev = position, line["prev_hash"]
            last, prev_line_hash = position, line["hash"]
            count += 1
        if not trailer_seen:
            raise Invalid(None, "the export ends without its trailer (truncated)")
        if first is not None and last is not None:
            for position in heads:
                if first <= position <= last and position not in seen_heads:
                    raise Invalid(None, f"the event at checkpoint {position} is missing")
        matched = len(seen_heads)
        return Verdict(True, f"valid: {count} events, {matched} checkpoint(s) matched")
    except Invalid as bad:
        where = f"line {bad.line}: " if bad.line is not None else ""
        return Verdict(False, f"invalid: {where}{bad.message}", bad.line)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: verify.py EXPORT.ndjson CHECKPOINTS.json", file=sys.stderr)
        return 2
    with open(args[1], encoding="utf-8") as f:
        checkpoints = json.load(f)
    with open(args[0], "rb") as export:
        verdict = verify(export, checkpoints)
    print(verdict.message)
    return 0 if verdict.valid else 1


if __name__ == "__main__":
    sys.exit(main())
