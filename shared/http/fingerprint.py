"""The fingerprint of a write request: the one definition of "the same request".

Every event records the fingerprint of the request that wrote it (`CommandContext`), and an
Idempotency-Key's stored answer is kept under it: a key presented again with another request is
told apart from a retry by this value alone, whether its stored answer is still there or not.
"""

from __future__ import annotations

import hashlib
import hmac
import json

#: Where the guard leaves the fingerprint in the ASGI scope's state for the route's context.
STATE_KEY = "request_fingerprint"


def canonical_body(body: bytes) -> bytes:
    """The body as canonical JSON (sorted keys, no spaces), so formatting is not a difference;
    a body that is not JSON is taken as it is."""
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        return body


def request_fingerprint(secret: bytes, method: str, path: str, client: str, body: bytes) -> str:
    """HMAC-SHA256, keyed with the index key (`COMPLAINTS_INDEX_KEY`), over the method, the path,
    the acting client (the token's `sub`) and the canonical body; 64 hex digits.

    Keyed because the body holds personal data: a plain digest of a known form with a phone
    number in it could be found by trying every number. Method, path and client are a JSON
    array, so no value can pass for another (a `sub` with a space or colon in it included);
    the array ends at the first newline, which JSON escapes inside strings.
    """
    head = json.dumps([method, path, client], separators=(",", ":")).encode()
    message = b"complaints-request-v1\n" + head + b"\n" + canonical_body(body)
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def legacy_request_hash(method: str, path: str, body: bytes) -> str:
    """How Idempotency-Key claims taken before revision 0016 named their request (a plain
    SHA-256, without the client). Only compared, never stored any more: such a claim, still
    held or abandoned by a crash, is still matched by its retry."""
    return hashlib.sha256(
        method.encode() + b" " + path.encode() + b"\n" + canonical_body(body)
    ).hexdigest()
