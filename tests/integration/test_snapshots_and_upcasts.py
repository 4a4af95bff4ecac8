"""A change of the aggregate or of an event's shape: stale snapshots are ignored, never a failed
read, and the audit chain's record of an event never changes when it is upcast."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from shared.audit.chain import record_of
from shared.audit.verify import GENESIS, record_hash
from shared.domain.clock import FixedClock
from shared.domain.codes import Complexity, RefusalReason, Status
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.domain.upcasts import install
from shared.http.views import history_of
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import POLICY, intake_body


@pytest.fixture
async def snapshotting(settings: Settings, clock: FixedClock) -> AsyncIterator[ComplaintStore]:
    """A store that snapshots every 3 events."""
    store = ComplaintStore(settings.model_copy(update={"snapshot_interval": 3}), clock=clock)
    await store.open()
    yield store
    await store.close()


def context(clock: FixedClock) -> CommandContext:
    return CommandContext(Actor("sup-1", "supervisor"), "intake", clock(), "hotline")


async def investigating(store: ComplaintStore, clock: FixedClock) -> UUID:
    """A complaint of 4 events (a snapshot at 3) under investigation."""
    ctx = context(clock)
    complaint_id = (await store.accept(intake_body(), ctx)).complaint.id
    await store.execute(
        complaint_id, lambda c: c.assign("net", "inv-1", Complexity.SIMPLE, POLICY, ctx), ctx=ctx
    )
    for n in range(2):
        clock.advance(timedelta(minutes=1))
        await store.execute(
            complaint_id,
            lambda c, n=n: c.add_evidence("system_log", f"L{n}", "", context(clock)),
            ctx=ctx,
        )
    return complaint_id


def latest_snapshot(store: ComplaintStore, complaint_id: UUID) -> tuple[int, dict[str, Any]]:
    """The latest stored snapshot row, whatever its version: (aggregate version, its state)."""
    assert store.app.snapshots is not None
    (row,) = store.app.snapshots.recorder.select_events(complaint_id, desc=True, limit=1)
    return row.originator_version, store.app.mapper.state_of(row)["state"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("stale", ["newer_code", "older_code", "renamed_class"])
async def test_a_snapshot_that_does_not_fit_the_code_is_ignored_and_replaced(
    snapshotting: ComplaintStore,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
    stale: str,
) -> None:
    store = snapshotting
    complaint_id = await investigating(store, clock)
    truth = await store.get(complaint_id)  # from the snapshot at 3 and one event
    assert truth.version == 4

    # Write a snapshot at version 4 straight into the store: its state is not what the events
    # give (another status, a field missing, one unknown), as code of another version builds.
    def write_stale() -> None:
        app = store.app
        snapshot = Complaint.Snapshot.take(app.load(complaint_id))
        state = snapshot.state
        state.update(status=Status.ARCHIVED.value, ghost="from another version")
        del state["deadlines"]
        topic = snapshot.topic
        if stale == "newer_code":
            state["class_version"] = Complaint.class_version + 1
        elif stale == "renamed_class":
            topic = "shared.domain.complaint:ComplaintOfOld"
        forged = Complaint.Snapshot(
            originator_id=snapshot.originator_id,
            originator_version=snapshot.originator_version,
            timestamp=snapshot.timestamp,
            topic=topic,
            state=state,
        )
        assert app.snapshots is not None
        app.snapshots.recorder.insert_events([app.mapper.to_stored_event(forged)])

    await store._run(write_stale)
    if stale == "older_code":  # the snapshot is of this code; the code moves on
        monkeypatch.setattr(Complaint, "class_version", Complaint.class_version + 1)
    assert latest_snapshot(store, complaint_id)[0] == 4

    # Reads replay from the events, now and as of a time.
    read = await store.get(complaint_id)
    assert vars(read) == vars(truth)
    assert not hasattr(read, "ghost")
    as_of = await store.get(complaint_id, as_of=clock())
    assert (as_of.version, as_of.status, as_of.deadlines) == (4, truth.status, truth.deadlines)
    assert [e.version for e in await store.history(complaint_id)] == [1, 2, 3, 4]

    # A command works on it, and its save snapshots the complaint anew, in the current version.
    clock.advance(timedelta(minutes=1))
    ctx = context(clock)
    written = await store.execute(complaint_id, lambda c: c.pause_clock("waiting", ctx), ctx=ctx)
    assert written.complaint.version == 5
    version, state = latest_snapshot(store, complaint_id)
    assert version == 5
    assert state["class_version"] == Complaint.class_version
    assert state["status"] == Status.INVESTIGATING.value
    assert "ghost" not in state
    assert not store.app.snapshots.is_stale(complaint_id)  # type: ignore[union-attr]
    after = await store.get(complaint_id)
    assert after.version == 5
    assert after.paused_at == clock()
    assert after.deadlines.keys() == truth.deadlines.keys()


@pytest.mark.parametrize("class_version", [1, Complaint.class_version])
async def test_every_snapshot_records_the_state_version(
    snapshotting: ComplaintStore,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
    class_version: int,
) -> None:
    """From the first version on (the library records it only from 2)."""
    monkeypatch.setattr(Complaint, "class_version", class_version)
    complaint_id = await investigating(snapshotting, clock)
    version, state = latest_snapshot(snapshotting, complaint_id)
    assert version == 3
    assert state["class_version"] == class_version


async def test_an_upcast_changes_no_hash_of_an_event_stored_before_it(
    store: ComplaintStore, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `Refused` of the first shape (no `tell`) hashes the same in the audit chain and in the
    history's links once an upcast gives it the field; reads see the upcast form."""
    ctx = context(clock)
    complaint_id = (await store.accept(intake_body(), ctx)).complaint.id

    def refuse_in_the_first_shape() -> None:
        app = store.app
        complaint = app.load(complaint_id)
        complaint.refuse(RefusalReason.OUT_OF_SCOPE, "not ours", "the regulator", ctx)
        (refused,) = complaint.collect_events()
        del vars(refused)["tell"]  # as the first version stored it
        app.save(refused)

    await store._run(refuse_in_the_first_shape)

    async def hashes() -> tuple[list[str], list[str], dict[str, Any]]:
        events = [e for e in await store.read(0, 100) if e.aggregate_id == complaint_id]
        chain = [record_hash(GENESIS, record_of(e)) for e in events]
        history = await store.history(complaint_id)
        links = [e.hash for e in history_of(complaint_id, history, unmasked=True).events]
        return chain, links, history[-1].data

    chain_before, links_before, refused_before = await hashes()
    assert "tell" not in refused_before

    # The upcast the first shape would get, in its one place (restored after the test).
    monkeypatch.setattr(Complaint.Refused, "class_version", 1, raising=False)
    monkeypatch.setattr(Complaint.Refused, "upcast_v1_v2", None, raising=False)

    def told_nothing(state: dict[str, Any]) -> None:
        state.setdefault("tell", False)

    install(Complaint, {"Complaint.Refused": (told_nothing,)})
    assert Complaint.Refused.class_version == 2

    chain_after, links_after, refused_after = await hashes()
    assert refused_after["tell"] is False  # the reads see the upcast form
    assert chain_after == chain_before
    assert links_after == links_before
    refused = await store.get(complaint_id)
    assert refused.status == Status.REFUSED
    assert "refusal-1" not in refused.notifications  # the first version told nobody
