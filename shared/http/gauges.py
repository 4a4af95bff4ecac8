"""States read when `/metrics` is scraped (`Metrics.on_scrape`): projection lag, checkpoint age,
the store's connections and calls in use. Each a query bounded by a key or an index."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from shared.audit.tables import audit_chain, audit_checkpoints
from shared.domain.clock import Clock
from shared.readmodel.projector import ProjectionRunner, lag_seconds
from shared.readmodel.times import from_db
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
