"""Signed chain heads: Ed25519 over (position, hash, signed_at)."""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.audit.verify import SCHEME, checkpoint_message
from shared.readmodel.tables import audit_chain, audit_checkpoints


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
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)
        return key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return loaded


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


class Checkpoints:
    def __init__(self, engine: AsyncEngine, key: Ed25519PrivateKey) -> None:
        self.engine = engine
        self.key = key

    async def sign_head(self, now: datetime) -> dict[str, Any] | None:
        """Sign the current chain head unless it is signed already; returns the checkpoint."""
        async with self.engine.connect() as conn:
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
            return dict(existing)
        signed_at = now.isoformat()
        signature = self.key.sign(checkpoint_message(head.position, head.hash, signed_at))
        checkpoint = {
            "position": head.position,
            "hash": head.hash,
            "signed_at": signed_at,
            "signature": base64.b64encode(signature).decode("ascii"),
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(audit_checkpoints.insert().values(**checkpoint))
        except IntegrityError:  # signed meanwhile by another process
            pass
        return checkpoint

    async def listing(self) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.position))
            ).mappings()
            checkpoints = [dict(r) for r in rows]
        return {
            "algorithm": "Ed25519",
            "scheme": SCHEME,
            "public_key": public_pem(self.key),
            "checkpoints": checkpoints,
        }
