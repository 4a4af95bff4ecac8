"""The key-encryption keys (KEKs) that wrap the customers' keys: `python -m shared.cli.kek CMD`.

- `create`: write the KEK file (`COMPLAINTS_KEK_PATH`) with a first KEK, before the first
  setup in production (the setup step does it by itself in development).
- `rotate`: add a new KEK and re-wrap every customer key under it (and re-seal the webhook
  subscriptions' signing secrets under it). Safe while the services run
  (they read the file again when it changes). If a rotation stopped half-way, running it again
  finishes that one instead of starting another. Holds the KEK file's lock (`<file>.lock`)
  throughout, so concurrent rotations and purges wait for each other.
- `purge`: destroy the KEKs superseded more than `COMPLAINTS_KEK_RETENTION_DAYS` (30) ago:
  run it daily. From then on no copy of the database older than that (a backup, a WAL
  segment) yields any customer's key, erased or not.
- `status`: each KEK, when it was superseded, when `purge` destroys it, and the keys it wraps.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from shared.settings import Settings
from shared.store.facade import ComplaintStore
from shared.store.keystore import KekFile, KekFileError, KekMissing
from shared.webhooks.subscriptions import reseal_secrets


async def command(settings: Settings, name: str, store: ComplaintStore | None = None) -> str:
    """Run one command; what it did, to print. `store`: an open store to use (tests)."""
    if name == "create":
        KekFile.load(settings.kek_path, create=True)
        return f"KEK file ready: {settings.kek_path} (mode 600; keep it out of database backups)"
    own = store is None
    store = store or ComplaintStore(settings)
    if own:
        await store.open()
    try:
        if name == "rotate":
            kek, count, finished = await store.rotate_kek()
            secrets = await reseal_secrets(store)
            what = "finished the rotation to" if finished else "rotated to"
            resealed = f", {secrets} webhook secret(s) re-sealed" if secrets else ""
            return f"{what} KEK {kek.id}: {count} customer key(s) re-wrapped{resealed}"
        if name == "purge":
            await reseal_secrets(store)  # none is left sealed under a KEK about to go
            gone = await store.purge_keks()
            return f"destroyed {len(gone)} KEK(s)" + "".join(f" {k.id}" for k in gone)
        return await _status(store, settings)
    finally:
        if own:
            await store.close()


async def _status(store: ComplaintStore, settings: Settings) -> str:
    keks = store.app.keystore.keks
    in_use = await asyncio.to_thread(store.app.keystore.kek_ids)
    lines = []
    for kek in keks.keks:
        retired = keks.retired_at(kek)
        due = keks.destroyed_from(kek, timedelta(days=settings.kek_retention_days))
        when = (
            f"superseded {retired:%Y-%m-%d}, destroyed by purge from {due:%Y-%m-%d}"
            if retired and due
            else "current"
        )
        wraps = "wraps live keys" if kek.id in in_use else "wraps no live key"
        lines.append(f"{kek.id}  created {kek.created_at:%Y-%m-%d}  {when}  {wraps}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["create", "rotate", "purge", "status"])
    args = parser.parse_args()
    settings = Settings()
    settings.check()
    try:
        print(asyncio.run(command(settings, args.command)))
    except (KekFileError, KekMissing) as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    main()
