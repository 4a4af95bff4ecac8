"""The one place where old shapes of stored events are brought to the current one.

Stored events never change; the code that reads them does. Two tools, in this order:

1. **A keyword default** on the `@event` method, when the old events simply lack a field and
   one value is right for all of them. Nothing to write here: the library calls the method
   with the stored fields only, so the default fills in what an old event lacks. Older
   shapes are read that way today, for example `Accepted` without `acknowledge` (False:
   nothing was acknowledged, so a replay sends nothing), `Refused` without `tell` (False,
   likewise), `Extended` without `moves` (None: only the deadline named was moved).
2. **An upcast here**, when a default cannot say it: a field renamed, a value coded anew, a
   fact split in two. `UPCASTS` maps an event class, by its qualified name
   (`"Complaint.Refused"`), to its steps in order; step *n* turns the stored state of version
   *n* into version *n + 1*, in place. `install` gives the class the library's own mechanism:
   `class_version` (new events are stored with it) and `upcast_vN_vN+1` static methods
   (`eventsourcing.persistence.Mapper.to_domain_event` runs them on every older event, for
   every reader: aggregates, projections, history, exports).

Rules for a step:
- Personal fields (`shared.domain.personal.EVENT_FIELDS`) stay at their paths; a step sees
  them as stored (sealed), and reads nothing of them.
- The audit chain and the history's hash links commit to the event *as stored*, never to its
  upcast form (`shared.store.sealing.SealingMapper.decode`), so adding a step here changes no
  hash, no checkpoint and no exported line.
- The aggregate's own state is never upcast: a change of what replaying the events gives is a
  new `Complaint.class_version`, and snapshots of another version are ignored
  (`shared.store.snapshots`).

An event class that is renamed keeps its old topic resolvable with the library's
`register_topic`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: Turns one version of an event's stored state into the next, in place.
Upcast = Callable[[dict[str, Any]], None]

#: Each event class with upcasts, by qualified name, and its steps from version 1 on.
UPCASTS: dict[str, tuple[Upcast, ...]] = {}


def install(aggregate: type, upcasts: Mapping[str, tuple[Upcast, ...]] = UPCASTS) -> None:
    """Give the aggregate's event classes their upcast steps (at import of the aggregate's
    module, so every process that can read its events upcasts them)."""
    prefix = aggregate.__name__ + "."
    for name, steps in upcasts.items():
        if not name.startswith(prefix) or not steps:
            continue
        event_class = getattr(aggregate, name.removeprefix(prefix))
        event_class.class_version = len(steps) + 1
        for n, step in enumerate(steps, start=1):
            setattr(event_class, f"upcast_v{n}_v{n + 1}", staticmethod(step))
