"""Health, readiness and metrics: what ops engineers and orchestrators poll."""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from shared.http.deps import StoreDep
from shared.http.errors import problem_response
from shared.metrics import CONTENT_TYPE, Metrics

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


#: How long /ready waits for the event store before answering 503.
READY_SECONDS = 2.0


@router.get("/health", response_model=Health)
async def health(request: Request) -> dict[str, Any]:
    """Liveness: the process is up and answering."""
    return {"status": "ok", "service": request.app.state.service}


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"description": "The event store cannot be reached"}},
)
async def ready(request: Request, store: StoreDep) -> Any:
    """Readiness: the event store answers (and reports its last global position)."""
    try:
        position = await store.ping(within=READY_SECONDS)
    except Exception as exc:
        log.warning("not ready: %s", type(exc).__name__ if isinstance(exc, TimeoutError) else exc)
        return problem_response(
            503, "The event store cannot be reached.", instance=request.url.path
        )
    projector = request.app.state.projector
    role = "off"
    if request.app.state.settings.projector_enabled:
        role = "leader" if projector.is_leader else "standby"
    projections = await projector.lags(position)
    return {
        "status": "ready",
        "service": request.app.state.service,
        "position": position,
        "projector": role,
        "projections": {
            name: {"position": lag.position, "lag": lag.events} for name, lag in projections.items()
        },
    }


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process (the README lists them)."""
    metrics: Metrics = request.app.state.metrics
    return Response(await metrics.exposition(), media_type=CONTENT_TYPE)
