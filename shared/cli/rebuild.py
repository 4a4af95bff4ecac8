"""Rebuild projections from the first event: `python -m shared.cli.rebuild [NAME ...]`.

Safe while the services run: the reset moves the projection back to position 0 in one
transaction, and every batch compares-and-sets its position, so this command and a running
projector never apply an event twice (whoever writes a batch first wins; the other drops it).
"""

from __future__ import annotations

import argparse
import asyncio

from tqdm import tqdm

from shared.audit.chain import ChainProjection
from shared.readmodel.projector import Projection, catch_up_together, positions_of, reset
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.facade import ComplaintStore


def projections(store: ComplaintStore) -> dict[str, Projection]:
    return {p.name: p for p in (SummaryProjection(store), ChainProjection())}


async def rebuild(settings: Settings, names: list[str], *, progress: bool = True) -> None:
    store = ComplaintStore(settings)
    await store.open()
    try:
        available = projections(store)
        unknown = set(names) - set(available)
        if unknown:
            raise SystemExit(f"unknown projection(s) {sorted(unknown)}; use {sorted(available)}")
        head = await store.ping()
        chosen = [available[name] for name in names or list(available)]
        for projection in chosen:
            await reset(store.engine, projection)
        # Together, as the projector runs them: each batch is read from the store once.
        label = ", ".join(p.name for p in chosen)
        with tqdm(total=head, desc=label, unit="event", disable=not progress) as bar:
            while True:
                applied = await catch_up_together(store, store.engine, chosen)
                found = await positions_of(store.engine, [p.name for p in chosen])
                position = min(found.get(p.name, 0) for p in chosen)
                bar.update(max(0, min(position, head) - bar.n))
                if applied == 0 and position >= head:
                    break
                if applied == 0:
                    await asyncio.sleep(0.05)  # a running projector got the batch first
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="complaint_summaries, audit_chain (default: all)")
    args = parser.parse_args()
    settings = Settings()
    settings.check()
    asyncio.run(rebuild(settings, args.names))


if __name__ == "__main__":
    main()
