"""Schemathesis hooks for `test_contract_fuzzing.py` (loaded by SCHEMATHESIS_HOOKS).

Each request gets an Idempotency-Key of its own when it sends one, as a client does: the
same key with another body is refused by contract (422 `idempotency-key-reused`), and the
fuzzer, which knows nothing of keys, would otherwise send one key with many bodies.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import schemathesis


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: Any) -> None:
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str):
            headers[name] = str(uuid4())
