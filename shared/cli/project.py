"""Run the projections in a process of their own: `python -m shared.cli.project`.

The services run them already (one process at a time, by lease); this is for deployments that
want the projector apart from the request-serving processes, or services started with
COMPLAINTS_PROJECTOR_ENABLED=false.
"""

from __future__ import annotations

import asyncio
import contextlib

from shared.audit.checkpoints import Checkpoints, load_key
from shared.domain.clock import system_clock
from shared.http.app import open_when_reachable, projection_runner
from shared.logs import configure
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from shared.store.lease import holder_name


async def project(settings: Settings) -> None:
    store = ComplaintStore(settings)
    try:
        # (a database not reachable yet is waited for, as the services wait)
        await open_when_reachable(store)
        key = load_key(settings.audit_key_path, create=False)
        checkpoints = Checkpoints(store.engine, key, settings.audit_key_path)
        # which KEKs this process holds, as every service process reports (kek_holders)
        reporting = asyncio.create_task(store.keep_reporting_keks(holder_name(store)))
        try:
            await projection_runner(settings, store, checkpoints, system_clock, "projector").run()
        finally:
            reporting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporting
    finally:
        await store.close()


def main() -> None:
    settings = Settings()
    settings.check()
    configure(settings.log_level)
    asyncio.run(project(settings))


if __name__ == "__main__":
    main()
