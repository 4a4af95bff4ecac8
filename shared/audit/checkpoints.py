"""Signed chain heads: Ed25519 over (position, hash, signed_at), and the signing key's rotation.

A rotation (`python -m shared.cli.rotate_audit_key`) has the key in force sign one checkpoint
that announces its successor (public key and fingerprint); from then on only the successor
signs. Each process notices by the announcement in the store, and takes the successor from
`COMPLAINTS_AUDIT_KEY_PATH`, where the rotation put it.

Signing a head and announcing a successor each run in one transaction that first takes the
same lock (`_serialised`), and a signer checks there, against the newest announcement at or
below the head it signs, that its key is still in force: a rotation that lands between a
process choosing its key and inserting its checkpoint cannot leave a retired key's signature
past the announcement (which every verifier would reject).
"""

from __future__ import annotations

import base64
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.audit.tables import audit_chain, audit_checkpoints
from shared.audit.verify import GENESIS, SCHEME, checkpoint_message, fingerprint

log = logging.getLogger("complaints.audit")

#: The PostgreSQL advisory lock (transaction-scoped) that signers and the rotation take.
SIGNING_LOCK = 0x61756469745F6B65  # "audit_ke"


async def _serialised(conn: AsyncConnection) -> None:
    """Begin the transaction by taking the signing lock, held until it ends: on PostgreSQL an
    advisory lock; on SQLite the database's write lock (`BEGIN IMMEDIATE`; the driver begins
    no transaction before a read, so one begun by the first SELECT would not serialise)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(SIGNING_LOCK)))
    else:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")


async def _announced(conn: AsyncConnection, at_most: int | None = None) -> str | None:
    """The fingerprint of the newest successor announced (at or below position `at_most`),
    None before any rotation."""
    query = select(audit_checkpoints.c.successor).where(audit_checkpoints.c.successor.is_not(None))
    if at_most is not None:
        query = query.where(audit_checkpoints.c.position <= at_most)
    pem = await conn.scalar(query.order_by(audit_checkpoints.c.position.desc()).limit(1))
    return successor_of(pem)["fingerprint"] if pem else None


class KeyRetired(Exception):
    """This process's signing key has been succeeded, and the successor is not installed."""


class RotationRefused(Exception):
    """A rotation that cannot be made now; the message says why."""


def load_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    """The signing key; created (mode 600) only where `create` allows, e.g. in development."""
    if not path.exists():
        if not create:
            raise FileNotFoundError(
                f"no audit signing key at {path}: set COMPLAINTS_AUDIT_KEY_PATH to an Ed25519 "
                "private key in PEM, or run the setup step in development"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        write_key(path, key)
        return key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return loaded


def write_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write the private key (PEM, mode 600) and make it durable before anything relies on it."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def key_fingerprint(key: Ed25519PrivateKey) -> str:
    """The fingerprint a regulator pins (defined once, in the verifier)."""
    return fingerprint(key.public_key())


def successor_of(pem: str) -> dict[str, str]:
    """How a checkpoint names the key that signs after it."""
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    return {"public_key": pem, "fingerprint": fingerprint(key)}


class Checkpoints:
    def __init__(
        self, engine: AsyncEngine, key: Ed25519PrivateKey, key_path: Path | None = None
    ) -> None:
        """`key_path`: where a successor is found once a rotation has announced one."""
        self.engine = engine
        self.key = key
        self.key_path = key_path

    async def signing_key(self) -> Ed25519PrivateKey:
        """The key in force: this process's, or the successor a rotation announced (read again
        from the key file). KeyRetired when the key file still holds a retired key."""
        async with self.engine.connect() as conn:
            announced = await _announced(conn)
        if announced is None or announced == key_fingerprint(self.key):
            return self.key
        if self.key_path is not None and self.key_path.exists():
            installed = load_key(self.key_path, create=False)
            if key_fingerprint(installed) == announced:
                log.info("audit: signing with the successor key %s", announced[:16])
                self.key = installed
                return installed
        raise KeyRetired(
            f"the audit signing key {key_fingerprint(self.key)[:16]}… has been succeeded by "
            f"{announced[:16]}…, which is not installed at COMPLAINTS_AUDIT_KEY_PATH"
        )

    async def announce_successor(self, successor: Ed25519PrivateKey, now: datetime) -> bool:
        """Sign the chain head with the key in force, naming `successor` as the key that signs
        from then on. False if that successor is announced already (a rotation retried)."""
        new = key_fingerprint(successor)
        async with self.engine.begin() as conn:
            await _serialised(conn)  # no checkpoint is signed meanwhile by the key it retires
            announced = await _announced(conn)
            if announced == new:
                return False
            if announced is not None and announced != key_fingerprint(self.key):
                raise RotationRefused(
                    f"the key at COMPLAINTS_AUDIT_KEY_PATH ({key_fingerprint(self.key)[:16]}…) is "
                    f"not the key in force ({announced[:16]}…)"
                )
            if new == key_fingerprint(self.key):
                raise RotationRefused("the successor is the key in force itself")
            head = (
                await conn.execute(
                    select(audit_chain.c.position, audit_chain.c.hash)
                    .order_by(audit_chain.c.position.desc())
                    .limit(1)
                )
            ).first()
            position, chain_hash = (head.position, head.hash) if head else (0, GENESIS)
            existing = (
                await conn.execute(
                    select(audit_checkpoints.c.successor).where(
                        audit_checkpoints.c.position == position
                    )
                )
            ).first()
            if existing is not None and existing.successor is not None:
                raise RotationRefused(
                    "the chain has not moved since the last rotation: rotate again after the "
                    "next event"
                )
            signed_at = now.isoformat()
            pem = public_pem(successor)
            signature = self.key.sign(checkpoint_message(position, chain_hash, signed_at, new))
            row = {
                "hash": chain_hash,
                "signed_at": signed_at,
                "signature": base64.b64encode(signature).decode("ascii"),
                "successor": pem,
            }
            # A plain checkpoint of this head is replaced by the announcement: same position
            # and hash, signed by the same key, saying more.
            if existing is None:
                await conn.execute(audit_checkpoints.insert().values(position=position, **row))
            else:
                await conn.execute(
                    audit_checkpoints.update()
                    .where(audit_checkpoints.c.position == position)
                    .values(**row)
                )
        return True

    async def sign_head(self, now: datetime) -> dict[str, Any] | None:
        """Sign the current chain head unless it is signed already; returns the checkpoint
        (None while nothing is chained). A rotation announced meanwhile: the key is chosen
        again (the successor, or KeyRetired while it is not installed)."""
        key = await self.signing_key()
        try:
            return await self._sign_head_with(key, now)
        except KeyRetired:  # succeeded since signing_key() looked: look again
            return await self._sign_head_with(await self.signing_key(), now)

    async def _sign_head_with(self, key: Ed25519PrivateKey, now: datetime) -> dict[str, Any] | None:
        """Sign the chain head with `key`, in one transaction under the signing lock; KeyRetired
        (nothing signed) if an announcement at or below the head names another key."""
        async with self.engine.begin() as conn:
            await _serialised(conn)
            head = (
                await conn.execute(
                    select(audit_chain.c.position, audit_chain.c.hash)
                    .order_by(audit_chain.c.position.desc())
                    .limit(1)
                )
            ).first()
            if head is None:
                return None
            existing = (
                (
                    await conn.execute(
                        select(audit_checkpoints).where(
                            audit_checkpoints.c.position == head.position
                        )
                    )
                )
                .mappings()
                .first()
            )
            if existing is not None:
                return _shown(existing)
            announced = await _announced(conn, at_most=head.position)
            if announced is not None and announced != key_fingerprint(key):
                log.warning(
                    "audit: not signing position %s with key %s: succeeded by %s",
                    head.position,
                    key_fingerprint(key)[:16],
                    announced[:16],
                )
                raise KeyRetired(
                    f"the audit signing key {key_fingerprint(key)[:16]}… has been succeeded by "
                    f"{announced[:16]}…"
                )
            signed_at = now.isoformat()
            signature = key.sign(checkpoint_message(head.position, head.hash, signed_at))
            checkpoint = {
                "position": head.position,
                "hash": head.hash,
                "signed_at": signed_at,
                "signature": base64.b64encode(signature).decode("ascii"),
            }
            await conn.execute(audit_checkpoints.insert().values(**checkpoint))
        return checkpoint

    async def listing(self) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.position))
            ).mappings()
            checkpoints = [_shown(r) for r in rows]
        try:
            key = await self.signing_key()
        except KeyRetired:
            key = self.key
        return {
            "algorithm": "Ed25519",
            "scheme": SCHEME,
            "public_key": public_pem(key),
            "fingerprint": key_fingerprint(key),
            "checkpoints": checkpoints,
        }


def _shown(row: Any) -> dict[str, Any]:
    """A checkpoint as published: `successor` only on the one announcing a rotation."""
    checkpoint = {k: row[k] for k in ("position", "hash", "signed_at", "signature")}
    if row["successor"] is not None:
        checkpoint["successor"] = successor_of(row["successor"])
    return checkpoint
