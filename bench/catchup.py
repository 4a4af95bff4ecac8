"""The projector's catch-up rate: every read model and the audit chain rebuilt from the first
event, on a PostgreSQL database of its own.

N complaints are seeded through the store (an acceptance, an assignment and two evidence
items each, eight commands at a time, phase after phase), then both projections are reset and
brought up to the last event together, as the projector runs them, by two paths in turn
(three times each, the median kept): folding each batch's events onto the complaints the
projection holds (`COMPLAINTS_PROJECTION_CACHE_SIZE`), and the old path that reloads every
complaint a batch touches from the store (cache size 0). The rows of the two must be
identical.

    python -m bench.catchup [N] [--profile FILE]   # prints JSON
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

from bench.own import own_database, quiet_settings
from shared.audit.chain import ChainProjection
from shared.readmodel.projector import Projection, catch_up_together, reset
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.facade import ComplaintStore

#: Commands in flight while seeding.
SEED_CONCURRENCY = 8


async def seed(store: ComplaintStore, complaints: int) -> None:
    """Every complaint accepted, then every one assigned, then two evidence items each in two
    rounds: a complaint's events lie far apart, as in a store that has run for a while, so a
    batch touches many complaints once each rather than one complaint four times."""
    from bench.run import _assign, _evidence, _intake
    from bench.scale import ctx

    gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def accept(n: int) -> UUID:
        async with gate:
            agent = ctx("agent", "intake", datetime.now(UTC))
            written = await store.accept(_intake(f"catchup-{n % 500}"), agent)
            return written.complaint.id

    async def execute(complaint_id: UUID, command: Any, role: str) -> None:
        async with gate:
            at = ctx(role, "investigation", datetime.now(UTC))
            await store.execute(complaint_id, partial(command, ctx=at), ctx=at)

    ids = await asyncio.gather(*(accept(n) for n in range(complaints)))
    assign = partial(_assign, policy=store.policy)
    await asyncio.gather(*(execute(i, assign, "supervisor") for i in ids))
    for k in range(2):
        evidence = partial(_evidence, n=k)
        await asyncio.gather(*(execute(i, evidence, "investigator") for i in ids))


async def catch_up(store: ComplaintStore, projections: list[Projection], batch_size: int) -> float:
    """Seconds to bring the projections from the first event to the last, together, as the
    projector runs them."""
    for projection in projections:
        await reset(store.engine, projection)
    started = time.perf_counter()
    while await catch_up_together(store, store.engine, projections, batch_size):
        pass
    return time.perf_counter() - started


#: The projector of another checkout (`--before`), timed in a process of its own on the same
#: database: its projections reset, then caught up a tick at a time as its runner does.
BEFORE = """
import asyncio, time
from shared.audit.chain import ChainProjection
from shared.readmodel.projector import catch_up_once, reset
from shared.readmodel.summaries import SummaryProjection
from shared.settings import Settings
from shared.store.facade import ComplaintStore

async def main():
    settings = Settings(
        projector_enabled=False, deadline_watch_enabled=False, dispatcher_enabled=False
    )
    store = ComplaintStore(settings)
    await store.open()
    try:
        projections = [SummaryProjection(store), ChainProjection()]
        for projection in projections:
            await reset(store.engine, projection)
        started = time.perf_counter()
        while sum([await catch_up_once(store, store.engine, p, BATCH) for p in projections]):
            pass
        print(time.perf_counter() - started)
    finally:
        await store.close()

asyncio.run(main())
"""


async def before_in(checkout: Path, batch_size: int) -> float:
    """Seconds the projector of `checkout` takes to catch up from the first event."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", BEFORE.replace("BATCH", str(batch_size))],
        cwd=checkout,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


async def measure(
    settings: Settings,
    complaints: int,
    *,
    rounds: int = 3,
    paths: tuple[str, ...] = ("reload", "fold"),
    batch_size: int = 500,
    profile: Path | None = None,
    before: Path | None = None,
) -> dict[str, Any]:
    from tests.postgres import read_models

    store = ComplaintStore(settings)
    await store.open()
    try:
        started = time.perf_counter()
        await seed(store, complaints)
        seeded = time.perf_counter() - started
        events = await store.ping()
        found: dict[str, Any] = {"complaints": complaints, "events": events}
        found["seed_seconds"] = round(seeded, 2)
        rows = {}
        times: dict[str, list[float]] = {label: [] for label in paths}
        modes = {"reload": 0, "fold": settings.projection_cache_size}
        modes = {label: size for label, size in modes.items() if label in paths}
        if before is not None:
            modes = {"before": -1, **modes}
            times["before"] = []
        # Alternated, so neither path always runs on the tables the other just emptied.
        for label in [label for _ in range(rounds) for label in modes]:
            if label == "before":
                assert before is not None
                times[label].append(await before_in(before, batch_size))
                rows[label] = read_models(settings.database_url)
                continue
            profiler = cProfile.Profile() if profile and label == "fold" else None
            projections: list[Projection] = [
                SummaryProjection(store, modes[label]),
                ChainProjection(),
            ]
            if profiler:
                profiler.enable()
            times[label].append(await catch_up(store, projections, batch_size))
            if profiler:
                profiler.disable()
                assert profile is not None
                profiler.dump_stats(profile)
            rows[label] = read_models(settings.database_url)
        for label, taken in times.items():
            seconds = statistics.median(taken)
            found[label] = {
                "seconds": round(seconds, 3),
                "events_per_second": round(events / seconds),
                "runs": [round(t, 3) for t in taken],
            }
        if "reload" in rows:
            found["identical_rows"] = rows["fold"] == rows["reload"]
            found["ratio"] = round(
                found["fold"]["events_per_second"] / found["reload"]["events_per_second"], 2
            )
        if "before" in rows:
            found["identical_to_before"] = rows["fold"] == rows["before"]
            found["ratio_to_before"] = round(
                found["fold"]["events_per_second"] / found["before"]["events_per_second"], 2
            )
        return found
    finally:
        await store.close()


def apart(
    admin: str,
    complaints: int = 2000,
    profile: Path | None = None,
    paths: tuple[str, ...] = ("reload", "fold"),
    before: Path | None = None,
) -> dict[str, Any]:
    """`measure` on a database of its own (`bench.own`)."""
    with own_database(admin, "complaints-catchup-"):
        return asyncio.run(
            measure(quiet_settings(), complaints, profile=profile, paths=paths, before=before)
        )


def main() -> None:
    from tests.postgres import postgres_server

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("complaints", nargs="?", type=int, default=2000)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the fold catch-up")
    parser.add_argument("--fold-only", action="store_true", help="leave out the old path")
    parser.add_argument(
        "--before",
        type=Path,
        help="also time the projector of this checkout (e.g. `git archive main`) on the same "
        "database, in a process of its own",
    )
    args = parser.parse_args()
    paths = ("fold",) if args.fold_only else ("reload", "fold")
    with postgres_server() as admin:
        print(json.dumps(apart(admin, args.complaints, args.profile, paths, args.before), indent=2))


if __name__ == "__main__":
    main()
