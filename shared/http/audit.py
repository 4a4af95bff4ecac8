"""What a regulator reads: the audit export and the signed checkpoints of its chain."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from shared.audit.chain import ChainProjection
from shared.audit.checkpoints import Checkpoints, KeyRetired, key_fingerprint, public_pem
from shared.audit.export import export_lines, first_chained_at
from shared.domain.codes import Role
from shared.domain.context import Actor
from shared.http.auth import require_roles
from shared.http.deps import ClockDep, PrincipalDep, SettingsDep, StoreDep
from shared.http.errors import AUDIT_UNAVAILABLE, READ_RESPONSES, invalid_field
from shared.http.fields import Timestamp
from shared.http.routes import AUDIT_ROLES
from shared.readmodel.projector import wait_for_position

router = APIRouter(tags=["audit"], responses=READ_RESPONSES)

Auditor = Annotated[Actor, Depends(require_roles(*AUDIT_ROLES))]
Signer = Annotated[Actor, Depends(require_roles(Role.ANALYST))]


def _checkpoints(request: Request) -> Checkpoints:
    checkpoints: Checkpoints = request.app.state.checkpoints
    return checkpoints


CheckpointsDep = Annotated[Checkpoints, Depends(_checkpoints)]


def _cannot_sign(exc: KeyRetired) -> HTTPException:
    return HTTPException(
        503,
        f"Cannot sign: {exc}. Retry after the successor is installed.",
        headers={"Retry-After": "60"},
    )


async def _signing_key(checkpoints: CheckpointsDep) -> Ed25519PrivateKey:
    """The key in force; 503 while a rotation's successor is not installed here."""
    try:
        return await checkpoints.signing_key()
    except KeyRetired as exc:
        raise _cannot_sign(exc) from exc


SigningKeyDep = Annotated[Ed25519PrivateKey, Depends(_signing_key)]


class Successor(BaseModel):
    """The key a rotation hands over to, announced in the retiring key's last checkpoint."""

    public_key: str
    fingerprint: str = Field(pattern="^[0-9a-f]{64}$")


class Checkpoint(BaseModel):
    """A signed chain head: Ed25519 over position, hash and signed_at (`verify.py`)."""

    position: int = Field(examples=[1042])
    hash: str = Field(pattern="^[0-9a-f]{64}$")
    signed_at: str = Field(json_schema_extra={"format": "date-time"})
    signature: str = Field(description="base64")
    successor: Successor | None = Field(
        default=None, description="on the checkpoint that announces a key rotation"
    )


class CheckpointListing(BaseModel):
    algorithm: str = Field(examples=["Ed25519"])
    scheme: str = Field(description="what exactly is signed (a version tag of the message)")
    public_key: str = Field(description="PEM of the key in force")
    fingerprint: str = Field(pattern="^[0-9a-f]{64}$")
    checkpoints: list[Checkpoint]


class ExportLine(BaseModel):
    """One line of `GET /audit/export` (NDJSON): an event, with its links in the chain."""

    position: int
    aggregate: str = Field(examples=["Complaint"])
    aggregate_id: str
    complaint_id: str | None = Field(description="null on a major incident's events")
    version: int
    type: str = Field(examples=["Accepted"])
    at: str = Field(json_schema_extra={"format": "date-time"})
    ctx: dict[str, Any] | None = Field(description="who, through which service and channel")
    data: dict[str, Any] = Field(
        description="the event's data as stored; personal fields as salted digests where "
        "masked or erased"
    )
    salt: str | None = Field(description="null where masked: the digests cannot be tried")
    hash: str = Field(pattern="^[0-9a-f]{64}$")
    prev_hash: str = Field(pattern="^[0-9a-f]{64}$")


class ExportTrailer(BaseModel):
    """The last line's `trailer`: the period, its chain ends, signed like a checkpoint."""

    from_: str | None = Field(alias="from", json_schema_extra={"format": "date-time"})
    to: str | None = Field(json_schema_extra={"format": "date-time"})
    count: int
    first_prev_hash: str | None
    last_hash: str | None
    last_position: int | None
    complete: bool
    signed_at: str = Field(json_schema_extra={"format": "date-time"})
    signature: str = Field(description="base64 Ed25519")


class ExportTrailerLine(BaseModel):
    trailer: ExportTrailer


class AuditPublicKey(BaseModel):
    """The key that signs checkpoints and export trailers now."""

    algorithm: str = Field(examples=["Ed25519"])
    public_key: str = Field(
        description="PEM (SubjectPublicKeyInfo): save it as the file verify.py's --key reads",
        examples=["-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA…\n-----END PUBLIC KEY-----\n"],
    )
    fingerprint: str = Field(
        description="SHA-256 over the key's DER SubjectPublicKeyInfo, lowercase hex: compare "
        "it with the operator's through another channel before pinning the key",
        pattern="^[0-9a-f]{64}$",
        examples=["3b0c1f5e" * 8],
    )


@router.get(
    "/audit/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/x-ndjson": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/ExportLine"},
                            {"$ref": "#/components/schemas/ExportTrailerLine"},
                        ]
                    },
                }
            },
            "description": "one JSON object per line (`ExportLine`), then the trailer line "
            "(`ExportTrailerLine`)",
        },
        **AUDIT_UNAVAILABLE,
    },
)
async def audit_export(
    _: Auditor,
    principal: PrincipalDep,
    store: StoreDep,
    key: SigningKeyDep,
    clock: ClockDep,
    settings: SettingsDep,
    start: Annotated[Timestamp | None, Query(alias="from")] = None,
    end: Annotated[Timestamp | None, Query(alias="to")] = None,
) -> StreamingResponse:
    """Every event of [from, to) in global order, with the hash chain; check it with
    `shared/audit/verify.py` and the checkpoints. `from` defaults to the first event, `to` to
    now; one export covers at most `COMPLAINTS_AUDIT_EXPORT_MAX_DAYS` (366) days.

    Personal data is masked as in every read: for roles that see it masked (`regulator`,
    `analyst`) each personal field carries its salted digest and the line no salt; the chain
    verifies the same. The export covers every event committed before `to` (capped at now):
    it waits up to `COMPLAINTS_AUDIT_EXPORT_WAIT_SECONDS` for the chain to get there, else 503
    with Retry-After. The trailer names the last position and `complete`."""
    if start is not None and end is not None and end <= start:
        raise invalid_field("query", "to", "must be after `from`")
    now = clock()
    max_days = settings.audit_export_max_days
    first = start or await first_chained_at(store.engine)
    if first is not None and (end or now) - first > timedelta(days=max_days):
        raise invalid_field(
            "query",
            "from",
            f"one export covers at most {max_days} days: export period by period (each "
            "export's first prev_hash is the last hash of the one before)",
        )
    committed = await store.ping()
    wait = settings.audit_export_wait_seconds
    chained = await wait_for_position(store.engine, ChainProjection.name, committed, wait)
    if chained < committed:
        raise HTTPException(
            503,
            f"The audit chain has reached position {chained} of {committed}: the export would "
            "miss events. Retry shortly.",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    lines = export_lines(
        store,
        store.engine,
        key,
        start=start,
        end=end,
        now=now,
        unmasked=principal.sees_personal_data,
    )
    return StreamingResponse(lines, media_type="application/x-ndjson")


@router.get("/audit/public-key", responses=AUDIT_UNAVAILABLE)
async def audit_public_key(_: Auditor, key: SigningKeyDep) -> AuditPublicKey:
    """The key that signs checkpoints and exports now, for a regulator to pin (`verify.py
    --key`). A rotation has the retiring key announce its successor in a checkpoint, so a
    pinned key stays valid across rotations."""
    return AuditPublicKey(
        algorithm="Ed25519", public_key=public_pem(key), fingerprint=key_fingerprint(key)
    )


# (unset members stay out: `successor` only on the checkpoint that announces a rotation)
@router.get(
    "/audit/checkpoints", response_model=CheckpointListing, response_model_exclude_unset=True
)
async def audit_checkpoints(_: Auditor, checkpoints: CheckpointsDep) -> dict[str, Any]:
    """Signed chain heads (position, hash, signed_at, signature; `successor` on one that
    announces a key rotation), and the public key in force with its fingerprint."""
    return await checkpoints.listing()


@router.post(
    "/audit/checkpoints",
    status_code=201,
    response_model=Checkpoint,
    response_model_exclude_unset=True,
    responses={409: {"description": "Nothing has been chained yet"}, **AUDIT_UNAVAILABLE},
)
async def sign_checkpoint(
    _: Signer, checkpoints: CheckpointsDep, clock: ClockDep
) -> dict[str, Any]:
    """Sign the current chain head now (it is also signed periodically)."""
    try:
        signed = await checkpoints.sign_head(clock())
    except KeyRetired as exc:
        raise _cannot_sign(exc) from exc
    if signed is None:
        raise HTTPException(409, "Nothing has been chained yet.")
    return signed
