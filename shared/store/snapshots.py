"""Snapshots are a cache of a replay: one that does not fit the current code is ignored.

Every snapshot records the state version of its aggregate (the library's `class_version`, see
`Complaint.class_version`; a snapshot without one is of version 1, the library's rule). A read
takes the latest snapshot only when its version is the aggregate class's own and it decodes;
otherwise the aggregate is replayed from all its events, which are the truth: a read never
fails for a snapshot. Snapshots are never upcast.

The store remembers the aggregates it found a stale snapshot for (in this process), and the
application snapshots them anew at their next save (`ComplaintsApplication.save`) rather than
at their next snapshot point: a complaint replays in full until its next command, not for up
to `COMPLAINTS_SNAPSHOT_INTERVAL` more events. A complaint that is only read keeps replaying
(a read writes nothing).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    EventStore,
    MapperDeserialisationError,
    Recording,
    StoredEvent,
)
from eventsourcing.utils import TopicError, resolve_topic

logger = logging.getLogger(__name__)

#: How many aggregates with a stale snapshot a process remembers to snapshot anew.
STALE_KEPT = 10_000


def state_version(aggregate_class: type) -> int:
    """The state version the current code builds for this aggregate class."""
    return int(getattr(aggregate_class, "class_version", 1))


class CurrentSnapshots(EventStore[UUID]):
    """The snapshot store: yields only snapshots that fit the current code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stale: OrderedDict[UUID, None] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        originator_id: UUID,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Iterator[DomainEventProtocol[UUID]]:
        stored = self.recorder.select_events(originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
        for record in stored:
            snapshot = self.fitting(record)
            if snapshot is not None:
                yield snapshot

    def fitting(self, record: StoredEvent) -> Any:
        """The stored snapshot decoded, if it fits the current code; else None (and its
        aggregate is remembered, to be snapshotted anew at its next save)."""
        try:
            snapshot: Any = self.mapper.to_domain_event(record)
            state, topic = snapshot.state, snapshot.topic
            fits = isinstance(state, dict) and state.get("class_version", 1) == state_version(
                resolve_topic(topic)
            )
        except (MapperDeserialisationError, TopicError, AttributeError) as error:
            logger.warning(
                "snapshot %s@%s unreadable: %s",
                record.originator_id,
                record.originator_version,
                error,
            )
            fits = False
        if fits:
            return snapshot
        self._remember(UUID(str(record.originator_id)))
        return None

    def put(self, domain_events: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Store snapshots; their aggregates have a current one now."""
        recordings = super().put(domain_events, **kwargs)
        with self._lock:
            for snapshot in domain_events:
                self._stale.pop(snapshot.originator_id, None)
        return recordings

    def is_stale(self, aggregate_id: UUID) -> bool:
        """A stale snapshot of this aggregate was read since its last snapshot was taken."""
        with self._lock:
            return aggregate_id in self._stale

    def _remember(self, aggregate_id: UUID) -> None:
        with self._lock:
            self._stale[aggregate_id] = None
            self._stale.move_to_end(aggregate_id)
            if len(self._stale) > STALE_KEPT:
                self._stale.popitem(last=False)


#: What `split_snapshot` reads: the part (0 the complaint's key binding, 1 the snapshot, 2 an
#: event), then the event's version, topic and state, then the binding's columns.
LOAD_PARTS = (
    "part",
    "originator_version",
    "topic",
    "state",
    "bound",
    "key_id",
    "customer_id",
    "kek_id",
    "wrapped",
)


def split_snapshot(
    originator_id: UUID, rows: list[dict[str, Any]]
) -> tuple[StoredEvent | None, list[StoredEvent], dict[str, Any] | None]:
    """The rows of a load in one query (`LOAD_PARTS`, ordered by part and version): the
    snapshot, the events after it, and the binding of the complaint's key (None if unbound)."""
    snapshot = None
    binding = None
    events = []
    for row in rows:
        if row["part"] == 0:
            binding = row
            continue
        stored = StoredEvent(
            originator_id=originator_id,
            originator_version=int(row["originator_version"]),
            topic=str(row["topic"]),
            state=bytes(row["state"]),
        )
        if row["part"] == 1:
            snapshot = stored
        else:
            events.append(stored)
    return snapshot, events, binding
