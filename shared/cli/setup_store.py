"""Create the event store's tables once, before any service starts (services never do)."""

from __future__ import annotations

import asyncio

from shared.audit.checkpoints import load_key
from shared.logs import configure
from shared.readmodel.migrate import upgrade
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from shared.store.keystore import KekFile


async def setup(settings: Settings) -> None:
    """Create the event tables, migrate ours; in development make an audit signing key and a
    key-encryption key file if there are none."""
    development = settings.environment == "development"
    KekFile.load(settings.kek_path, create=development)
    store = ComplaintStore(settings)
    try:
        await store.create_schema(lambda engine, kek: upgrade(engine, kek=kek))
    finally:
        await store.close()
    load_key(settings.audit_key_path, create=development)


def main() -> None:
    settings = Settings()
    settings.check()
    configure(settings.log_level)  # JSON lines; the migrations' own at debug level only
    asyncio.run(setup(settings))
    print(f"event store ready: {settings.url.render_as_string(hide_password=True)}")


if __name__ == "__main__":
    main()
