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
from eventsourcing.persistence import EventStore, MapperDeserialisationError, Recording
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
            try:
                snapshot: Any = self.mapper.to_domain_event(record)
                state, topic = snapshot.state, snapshot.topic
                fits = isinstance(state, dict) and state.get("class_version", 1) == state_version(
                    resolve_topic(topic)
                )
            except (MapperDeserialisationError, TopicError, AttributeError) as error:
                logger.warning(
                    "snapshot %s@%s unreadable: %s", originator_id, record.originator_version, error
                )
                fits = False
            if fits:
                yield snapshot
            else:
                self._remember(originator_id)

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
