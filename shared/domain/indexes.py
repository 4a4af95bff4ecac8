"""Small aggregates that make intake's uniqueness rules atomic with the complaint itself.

They are saved in the same transaction as the complaint they index, so the event store's own
optimistic concurrency enforces them: two complaints can never take one acceptance number, and
two concurrent complaints of one customer thread are linked one after the other, never both as
the first.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

NAMESPACE = UUID("6f0c1d2e-8a53-4f8e-9d6b-3c4a5e7f9012")


class AcceptanceNumber(Aggregate):
    """Reserves one acceptance number (受理编号) for one complaint."""

    id: UUID

    @staticmethod
    def id_for(number: str) -> UUID:
        return uuid5(NAMESPACE, f"acceptance-no:{number}")

    @event("Reserved")
    def __init__(self, *, complaint_id: UUID, timestamp: datetime) -> None:
        self.complaint_id = complaint_id

    @classmethod
    def reserve(cls, number: str, complaint_id: UUID, at: datetime) -> AcceptanceNumber:
        return cls(id=cls.id_for(number), complaint_id=complaint_id, timestamp=at)  # type: ignore[call-arg]


class ComplaintThread(Aggregate):
    """The complaints of one customer about one service number and category, in order.

    Its id is an HMAC of the key under a server secret, and its events hold complaint ids
    alone: neither the store nor an audit export (which shows this id) lets anyone recover a
    service number by trying every phone number.
    """

    id: UUID

    @staticmethod
    def id_for(customer_id: str, service_number: str, category: str, secret: bytes) -> UUID:
        key = f"{customer_id}\x1f{service_number}\x1f{category}".encode()
        digest = hmac.new(secret, key, hashlib.sha256).hexdigest()
        return uuid5(NAMESPACE, f"thread:{digest}")

    @event("Started")
    def __init__(self, *, complaint_id: UUID, timestamp: datetime) -> None:
        self.complaint_ids: list[UUID] = [complaint_id]

    @classmethod
    def start(cls, thread_id: UUID, complaint_id: UUID, at: datetime) -> ComplaintThread:
        return cls(id=thread_id, complaint_id=complaint_id, timestamp=at)  # type: ignore[call-arg]

    @event("Joined")
    def join(self, *, complaint_id: UUID, timestamp: datetime) -> None:
        self.complaint_ids.append(complaint_id)

    @property
    def latest(self) -> UUID:
        return self.complaint_ids[-1]


class MajorIncident(Aggregate):
    """Complaints of one category from one area in one window, declared a major incident once.

    Its id is derived from (category, area, window), so two watchers declaring the same
    incident collide in the store and only one declaration (and escalation) is saved.
    """

    id: UUID

    @staticmethod
    def id_for(category: str, area: str, window_start: datetime) -> UUID:
        return uuid5(NAMESPACE, f"incident:{category}:{area}:{window_start.isoformat()}")

    @event("Declared")
    def __init__(
        self,
        *,
        category: str,
        area: str,
        window_start: datetime,
        complaint_ids: list[str],
        escalated: str,
        timestamp: datetime,
    ) -> None:
        self.category = category
        self.area = area
        self.complaint_ids = complaint_ids
        self.escalated = escalated

    @classmethod
    def declare(
        cls,
        category: str,
        area: str,
        window_start: datetime,
        complaint_ids: list[str],
        escalated: UUID,
        at: datetime,
    ) -> MajorIncident:
        return cls(  # type: ignore[call-arg]
            id=cls.id_for(category, area, window_start),
            category=category,
            area=area,
            window_start=window_start,
            complaint_ids=complaint_ids,
            escalated=str(escalated),
            timestamp=at,
        )
