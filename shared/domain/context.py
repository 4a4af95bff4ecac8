"""Who did something, through which service and channel, and when: recorded on every event."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import uuid4

from shared.logs import correlation_id as current_correlation_id
from shared.logs import current_traceparent


@dataclass(frozen=True)
class Actor:
    id: str
    role: str


@dataclass(frozen=True)
class CommandContext:
    actor: Actor
    service: str
    at: datetime
    channel: str | None = None
    idempotency_key: str | None = None
    #: Unique per request; lets a retried save recognise its own event that did commit.
    request_id: str = field(default_factory=lambda: uuid4().hex)
    #: Ties the event to the request's (or task's) logs and to the calls it caused.
    correlation_id: str | None = field(default_factory=current_correlation_id.get)
    #: What the HTTP request was (`shared.http.fingerprint`: a keyed digest, no personal data),
    #: so a reused Idempotency-Key is told from a retry; None for work no request asked for.
    request_fingerprint: str | None = None
    #: The W3C trace context of the request, where traces are on: work done later for it
    #: (the messages it asked for) continues its trace. Stored only when set.
    traceparent: str | None = field(default_factory=current_traceparent)

    def record(self) -> dict[str, Any]:
        """The context as stored in the event (the time is the event's own timestamp)."""
        traced = {"traceparent": self.traceparent} if self.traceparent else {}
        return {
            "actor": {"id": self.actor.id, "role": self.actor.role},
            "service": self.service,
            "channel": self.channel,
            "idempotency_key": self.idempotency_key,
            "request_id": self.request_id,
            "correlation_id": self.correlation_id,
            "request_fingerprint": self.request_fingerprint,
            **traced,
        }

    def at_time(self, at: datetime) -> CommandContext:
        return replace(self, at=at)
