"""States read when `/metrics` is scraped (`Metrics.on_scrape`): projection lag, checkpoint age,
the KEKs' ages, the store's connections and calls in use. Each a query bounded by a key or an
index."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from shared.audit.tables import audit_chain, audit_checkpoints
from shared.domain.clock import Clock
from shared.readmodel.projector import ProjectionRunner, lag_seconds
from shared.readmodel.times import from_db
from shared.settings import Settings
from shared.store.facade import ComplaintStore

#: How long a scrape waits for the store's head.
PING_SECONDS = 1.0


async def projection_lag(
    store: ComplaintStore, runner: ProjectionRunner, clock: Clock
) -> Iterable[Metric]:
    """Each projection's lag, in events (as `/ready` reports it) and in seconds."""
    # (the probe /ready shares, beside the commands: a database that does not answer holds
    # no command's thread for a scrape)
    behind = await runner.lags(await store.ping(within=PING_SECONDS))
    waited = await lag_seconds(store, behind, clock())
    events = GaugeMetricFamily(
        "complaints_projection_lag_events",
        "Events committed that the projection has not applied yet",
        labels=["projection"],
    )
    seconds = GaugeMetricFamily(
        "complaints_projection_lag_seconds",
        "How long the oldest event the projection has not applied yet has waited",
        labels=["projection"],
    )
    for name, lag in behind.items():
        events.add_metric([name], lag.events)
        seconds.add_metric([name], waited[name])
    return [events, seconds]


async def checkpoint_lag(store: ComplaintStore, clock: Clock) -> Iterable[Metric]:
    """How long the oldest event of the audit chain that no signed checkpoint covers yet has
    waited (0 when the chain's head is signed: a quiet night is not a missed checkpoint)."""
    async with store.engine.connect() as conn:
        signed = await conn.scalar(select(func.max(audit_checkpoints.c.position)))
        oldest = await conn.scalar(
            select(audit_chain.c.at)
            .where(audit_chain.c.position > (signed or 0))
            .order_by(audit_chain.c.position)
            .limit(1)
        )
    since = from_db(oldest)
    waited = (clock() - since).total_seconds() if since is not None else 0.0
    family = GaugeMetricFamily(
        "complaints_checkpoint_lag_seconds",
        "How long the oldest audit-chain event no signed checkpoint covers has waited "
        "(0 when the head is signed)",
        value=max(waited, 0.0),
    )
    return [family]


async def kek_ages(store: ComplaintStore, settings: Settings, clock: Clock) -> Iterable[Metric]:
    """How far past its rotation the KEK in force is, and how long a KEK has been staged: the
    daily `kek maintain` keeps both near 0 (shared.cli.kek)."""
    keks = store.app.keystore.keks
    current, staged = await asyncio.to_thread(lambda: (keks.current, keks.staged))
    now = clock()
    due = current.created_at + timedelta(days=settings.kek_rotation_days)
    return [
        GaugeMetricFamily(
            "complaints_kek_rotation_overdue_seconds",
            "How long past COMPLAINTS_KEK_ROTATION_DAYS the KEK in force has been in force "
            "(0 before)",
            value=max((now - due).total_seconds(), 0.0),
        ),
        GaugeMetricFamily(
            "complaints_kek_staged_seconds",
            "How long a staged KEK has waited to be put in force (0 when none is staged)",
            value=max((now - staged.created_at).total_seconds(), 0.0) if staged else 0.0,
        ),
    ]


async def store_in_use(store: ComplaintStore) -> Iterable[Metric]:
    """Connections of the SQL pool checked out (where the engine pools them) and calls into
    the event store running now."""
    families: list[Metric] = [
        GaugeMetricFamily(
            "complaints_store_calls_in_flight",
            "Calls into the event store running or waiting for a worker thread now",
            value=store.calls_in_flight,
        )
    ]
    checkedout = getattr(store.engine.sync_engine.pool, "checkedout", None)
    if callable(checkedout):
        families.append(
            GaugeMetricFamily(
                "complaints_db_pool_in_use",
                "Connections of the SQL pool (read models, audit, idempotency) checked out now",
                value=checkedout(),
            )
        )
    return families
