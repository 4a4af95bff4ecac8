"""Run the projections in a process of their own: `python -m shared.cli.project`.

The services run them already (one process at a time, by lease); this is for deployments that
want the projector apart from the request-serving processes, or services started with
COMPLAINTS_PROJECTOR_ENABLED=false.
"""

from __future__ import annotations

import asyncio
import logging

from shared.audit.checkpoints import Checkpoints, load_key
from shared.domain.clock import system_clock
from shared.http.app import projection_runner
from shared.settings import Settings
from shared.store.facade import ComplaintStore


async def project(settings: Settings) -> None:
    store = ComplaintStore(settings)
    await store.open()
    try:
        key = load_key(settings.audit_key_path, create=False)
        checkpoints = Checkpoints(store.engine, key, settings.audit_key_path)
        await projection_runner(settings, store, checkpoints, system_clock, "projector").run()
    finally:
        await store.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    settings = Settings()
    settings.check()
    asyncio.run(project(settings))


if __name__ == "__main__":
    main()
