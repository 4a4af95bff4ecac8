"""Create the event store's tables once, before any service starts (services never do).

python -m shared.cli.setup_store          # create or migrate
python -m shared.cli.setup_store --check  # exit 0 if the schema is the newest, else 1
                                          # (a Kubernetes init container waits on it)
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from shared.audit.checkpoints import load_key
from shared.logs import configure
from shared.readmodel.migrate import at_head, upgrade
from shared.settings import Settings
from shared.store.engine import create_engine
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


async def schema_ready(settings: Settings) -> bool:
    """Whether the setup step has brought the store to this version's schema (False while the
    database cannot be reached, too)."""
    engine = create_engine(settings)
    try:
        return await at_head(engine)
    except Exception as exc:  # unreachable, no tables yet: not ready, and say why
        print(f"schema not ready: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.cli.setup_store", description=__doc__)
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing: exit 0 if the schema is this version's newest, 1 otherwise",
    )
    args = parser.parse_args(argv)
    settings = Settings()
    settings.check()
    configure(settings.log_level)  # JSON lines; the migrations' own at debug level only
    if args.check:
        ready = asyncio.run(schema_ready(settings))
        print("schema ready" if ready else "schema not ready (run the setup step)")
        raise SystemExit(0 if ready else 1)
    asyncio.run(setup(settings))
    print(f"event store ready: {settings.url.render_as_string(hide_password=True)}")


if __name__ == "__main__":
    main()
