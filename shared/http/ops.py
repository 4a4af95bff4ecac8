"""Health, readiness and metrics: what ops engineers and orchestrators poll."""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from shared.http.deps import StoreDep
from shared.http.errors import problem_response
from shared.metrics import CONTENT_TYPE, Metrics
from shared.readmodel.projector import Lag, lag_seconds
from shared.store.facade import ComplaintStore

log = logging.getLogger("complaints.ops")

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: Literal["ok"]
    service: str = Field(examples=["intake"])


class ProjectionState(BaseModel):
    position: int = Field(description="the last event it has applied")
    lag: int = Field(description="events committed that it has not applied yet")


class Readiness(BaseModel):
    status: Literal["ready"]
    service: str = Field(examples=["intake"])
    position: int = Field(description="the store's last global position")
    projector: Literal["leader", "standby", "off"] = Field(
        description="whether this process runs the projections now (one process at a time)"
    )
    projections: dict[str, ProjectionState]


#: Where Prometheus scrapes: on the API's port, or on the metrics port when there is one.
METRICS_PATH = "/metrics"

#: How long /ready waits for the event store before answering 503.
READY_SECONDS = 2.0


@router.get("/health", response_model=Health)
async def health(request: Request) -> dict[str, Any]:
    """Liveness: the process is up and answering."""
    return {"status": "ok", "service": request.app.state.service}


@router.get(
    "/ready",
    response_model=Readiness,
    responses={
        503: {
            "description": "Not ready, the problem's `detail` says why: the event store cannot "
            "be reached (or could not be opened yet at start), or a projection this process "
            "runs is further behind than `COMPLAINTS_READY_MAX_LAG_EVENTS` / "
            "`_SECONDS` (`lagging` names each, how many events and seconds behind; "
            "`position` is the store's last)"
        }
    },
)
async def ready(request: Request, store: StoreDep) -> Any:
    """Readiness: the event store answers (and reports its last global position), and the
    projections this process runs keep up with it."""
    state = request.app.state
    if state.not_ready is not None:
        return problem_response(503, f"Not ready: {state.not_ready}.", instance=request.url.path)
    try:
        position = await store.ping(within=READY_SECONDS)
    except Exception as exc:
        log.warning("not ready: %s", type(exc).__name__ if isinstance(exc, TimeoutError) else exc)
        return problem_response(
            503, "The event store cannot be reached.", instance=request.url.path
        )
    projector = state.projector
    role = "off"
    if state.settings.projector_enabled:
        role = "leader" if projector.is_leader else "standby"
    projections = await projector.lags(position)
    lagging = await _lagging(request, store, projections) if role == "leader" else []
    if lagging:
        names = ", ".join(
            f"{item['projection']} {item['lag']} events and {item['lag_seconds']:g} s"
            for item in lagging
        )
        log.warning("not ready: projections behind the store: %s", names)
        return problem_response(
            503,
            f"Not ready: a projection this process runs is behind the store ({names}).",
            instance=request.url.path,
            position=position,
            lagging=lagging,
        )
    return {
        "status": "ready",
        "service": state.service,
        "position": position,
        "projector": role,
        "projections": {
            name: {"position": lag.position, "lag": lag.events} for name, lag in projections.items()
        },
    }


async def _lagging(
    request: Request, store: ComplaintStore, behind: dict[str, Lag]
) -> list[dict[str, Any]]:
    """The projections further behind the store than the settings allow, each with how many
    events and how many seconds (the age of its oldest event not applied yet) behind.

    Asked only of the process that holds the projector lease: it runs them, so their lag is
    its failing. A standby (or a process that runs no projector) serves its requests as well
    as ever: the leader's lag does not make it unready."""
    settings = request.app.state.settings
    waited = await lag_seconds(store, behind, request.app.state.clock())
    found = []
    for name, lag in behind.items():
        too_many = 0 < settings.ready_max_lag_events < lag.events
        too_old = 0 < settings.ready_max_lag_seconds < waited[name]
        if lag.events and (too_many or too_old):
            found.append(
                {"projection": name, "lag": lag.events, "lag_seconds": round(waited[name], 3)}
            )
    return found


@router.get(METRICS_PATH, response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (the README lists them). With
    `COMPLAINTS_METRICS_PORT` set, served on that port only (404 on the API's port)."""
    metrics: Metrics = request.app.state.metrics
    return Response(await metrics.exposition(), media_type=CONTENT_TYPE)
