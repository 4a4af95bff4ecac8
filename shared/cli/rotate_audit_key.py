"""Rotate the audit signing key: `python -m shared.cli.rotate_audit_key [--successor PEM]`.

The key in force (at COMPLAINTS_AUDIT_KEY_PATH) signs one last checkpoint, of the chain head,
that announces its successor; then the successor replaces it in that file (the old private
key is overwritten: it signs nothing more). Running services notice the announcement and take
the successor from the file at their next signature; a regulator who pinned the old key
follows the announcement (`verify.py --key OLD` accepts what the successor signs after it).

Without `--successor` a new Ed25519 key is made. The successor is first written beside the key
file (`<key file>.successor`), so a rotation interrupted at any point is finished by running
the command again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.audit.checkpoints import (
    Checkpoints,
    RotationRefused,
    key_fingerprint,
    load_key,
    write_key,
)
from shared.domain.clock import Clock, system_clock
from shared.settings import Settings
from shared.store.engine import create_engine


def pending_path(key_path: Path) -> Path:
    return key_path.with_name(key_path.name + ".successor")


async def rotate(
    settings: Settings, successor_path: Path | None = None, clock: Clock = system_clock
) -> tuple[str, str]:
    """Announce and install a successor key; returns (old, new) fingerprints."""
    key_path = settings.audit_key_path
    current = load_key(key_path, create=False)
    pending = pending_path(key_path)
    if successor_path is not None:
        given = load_key(successor_path, create=False)
        if pending.exists() and key_fingerprint(load_key(pending, create=False)) != key_fingerprint(
            given
        ):
            raise RotationRefused(
                f"an interrupted rotation to another key waits at {pending}: run the command "
                "again without --successor to finish it first"
            )
        write_key(pending, given)
    elif not pending.exists():
        write_key(pending, Ed25519PrivateKey.generate())
    successor = load_key(pending, create=False)
    engine = create_engine(settings)
    try:
        await Checkpoints(engine, current).announce_successor(successor, clock())
    finally:
        await engine.dispose()
    os.replace(pending, key_path)  # the retired private key is gone with it
    return key_fingerprint(current), key_fingerprint(successor)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--successor",
        type=Path,
        metavar="PEM",
        help="the successor's Ed25519 private key (PEM); default: a new one",
    )
    args = parser.parse_args(argv)
    settings = Settings()
    try:
        settings.check()
        old, new = asyncio.run(rotate(settings, args.successor))
    except (RotationRefused, FileNotFoundError, ValueError) as exc:
        print(f"rotation refused: {exc}", file=sys.stderr)
        return 1
    print(f"retired:   {old}")
    print(f"in force:  {new}  (at {settings.audit_key_path})")
    print(
        "A checkpoint signed by the retired key announces the new one; regulators who pinned "
        "the retired key need not pin again. Services take the new key at their next signature."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
