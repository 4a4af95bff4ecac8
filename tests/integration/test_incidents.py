"""Major incidents (群体性投诉): a sliding window, every member linked and escalated where it
can go up, complaints that keep coming join while it is open, and the reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid5

import pytest
from sqlalchemy import delete

from services.escalation.incidents import IncidentWatch
from services.escalation.main import create_app
from shared.audit.chain import ChainProjection
from shared.audit.verify import verify
from shared.domain.clock import FixedClock
from shared.domain.codes import EscalationTrigger, Level, RefusalReason
from shared.domain.context import Actor, CommandContext
from shared.domain.indexes import NAMESPACE, MajorIncident
from shared.domain.policy import DEFAULT_POLICY_PATH, Policy
from shared.readmodel.summaries import SummaryProjection
from shared.readmodel.tables import complaint_summaries
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from tests.conftest import START, TokenFactory, intake_body, pinned_key
from tests.integration.conftest import Api, catch_up, serving

#: The default policy, but three complaints from one area in an hour are a major incident.
BURSTY_TOML = DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(
    "threshold = 20", "threshold = 3"
)
BURSTY = Policy.from_toml(BURSTY_TOML)
AGENT = CommandContext(Actor("agent-1", "agent"), "intake", START, "hotline")
#: START is 10:00 in Beijing; the times below are Beijing's.
T10_00 = START


def incident_id(category: str, area: str, number: int) -> UUID:
    """The incident's id as the design states it."""
    return uuid5(NAMESPACE, f"incident:{category}:{area}:{number}")


@pytest.fixture
async def bursty(settings: Settings, clock: FixedClock) -> AsyncIterator[ComplaintStore]:
    store = ComplaintStore(settings, clock=clock, policy=BURSTY)
    await store.open()
    yield store
    await store.close()


async def accept(
    store: ComplaintStore,
    clock: FixedClock,
    name: str,
    *,
    area: str = "rural",
    category: str = "fault_repair",
) -> UUID:
    """A broadband complaint of a customer of its own, accepted now."""
    body = intake_body(
        category=category,
        business_type="broadband",
        area=area,
        customer={"id": f"cust-{name}", "name": "n", "phone": "13800000000"},
    )
    body.update(received_at=None, evidence=[])
    ctx = CommandContext(AGENT.actor, "intake", clock(), "hotline", request_id=f"accept-{name}")
    return (await store.accept(body, ctx)).complaint.id


async def at(
    store: ComplaintStore, clock: FixedClock, minutes: int, name: str, **where: str
) -> UUID:
    """Accept a complaint at 10:00 + `minutes` (Beijing) and let the read model follow."""
    clock.now = T10_00 + timedelta(minutes=minutes)
    complaint_id = await accept(store, clock, name, **where)
    await catch_up(store, SummaryProjection(store))
    return complaint_id


async def watch(store: ComplaintStore, clock: FixedClock, minutes: int | None = None) -> int:
    """One run of the watch (at 10:00 + `minutes`, or now), then the read model follows."""
    if minutes is not None:
        clock.now = T10_00 + timedelta(minutes=minutes)
    changed = await IncidentWatch(store, clock=clock).watch_once()
    await catch_up(store, SummaryProjection(store))
    return changed


def members(incident: MajorIncident) -> dict[UUID, dict[str, str]]:
    """complaint id → what was done with it (its member entry, but the id and the time)."""
    return {
        UUID(m["complaint_id"]): {
            k: v for k, v in m.items() if k not in ("complaint_id", "accepted_at")
        }
        for m in incident.members
    }


UP = {"done": "escalated", "from_level": "city", "to_level": "provincial"}


async def test_a_burst_is_one_incident_whose_every_complaint_is_linked_and_escalated(
    settings: Settings, clock: FixedClock
) -> None:
    stores = [ComplaintStore(settings, clock=clock, policy=BURSTY) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        store = stores[0]
        burst = [await accept(store, clock, f"r{i}") for i in range(3)]
        elsewhere = [await accept(store, clock, f"u{i}", area="urban") for i in range(2)]
        other = await accept(store, clock, "b0", category="billing")
        await catch_up(store, SummaryProjection(store))

        watchers = [IncidentWatch(s, clock=clock) for s in stores]
        declared = await asyncio.gather(*(w.watch_once() for w in watchers))
        assert sorted(declared) == [0, 1]  # two watchers at once, one incident
        await catch_up(store, SummaryProjection(store))
        assert await watchers[0].watch_once() == 0
        assert await watchers[1].watch_once() == 0

        expected = incident_id("fault_repair", "rural", 1)
        for complaint_id in burst:
            complaint = await store.get(complaint_id)
            assert complaint.incident_id == str(expected)
            assert (complaint.status, complaint.level) == ("escalated", "provincial")
            (escalation,) = complaint.escalations
            assert escalation["trigger"] == "major_incident"
            assert (escalation["from_level"], escalation["to_level"]) == ("city", "provincial")
            assert str(expected) in escalation["reason"]
            types = [e.type for e in await store.history(complaint_id)]
            assert types == ["Accepted", "IncidentLinked", "Escalated"]
        for complaint_id in [*elsewhere, other]:
            complaint = await store.get(complaint_id)
            assert complaint.incident_id is None
            assert (complaint.status, complaint.level, complaint.escalations) == (
                "accepted",
                "city",
                [],
            )
        incident = await store.get_incident(expected)
        assert (incident.category, incident.area, incident.number) == ("fault_repair", "rural", 1)
        assert members(incident) == {i: UP for i in burst}
    finally:
        for s in stores:
            await s.close()


@pytest.mark.parametrize(
    ("minutes", "declared_at"),
    [
        # 10:25, 10:45, 11:20: within 60 minutes, though an hour aligned to the epoch (or
        # the clock) would split them 2 + 1.
        ((25, 45, 80), 80),
        # 10:00, 11:10, 12:20: never three within 60 minutes.
        ((0, 70, 140), None),
    ],
)
async def test_the_window_slides(
    bursty: ComplaintStore,
    clock: FixedClock,
    minutes: tuple[int, int, int],
    declared_at: int | None,
) -> None:
    declared = {}
    for minute in range(0, 151, 5):  # the watch looks every five minutes
        if minute in minutes:
            await at(bursty, clock, minute, f"c{minute}")
        changed = await watch(bursty, clock, minute)
        if changed:
            declared[minute] = changed
    if declared_at is None:
        assert declared == {}
        return
    assert declared == {declared_at: 1}
    incident = await bursty.get_incident(incident_id("fault_repair", "rural", 1))
    assert incident.declared_at == T10_00 + timedelta(minutes=declared_at)
    assert incident.first_member_at == T10_00 + timedelta(minutes=25)
    assert incident.closes_at == T10_00 + timedelta(minutes=80 + 60)  # 12:20
    assert len(incident.members) == 3


async def test_complaints_join_while_the_incident_is_open_and_a_later_burst_is_a_new_one(
    bursty: ComplaintStore, clock: FixedClock
) -> None:
    store = bursty
    first = [await at(store, clock, m, f"a{m}") for m in (0, 10, 20)]
    assert await watch(store, clock) == 1  # at 10:20; open until 11:20
    number_1 = incident_id("fault_repair", "rural", 1)

    # 10:50: accepted while open, joins on the next run and keeps it open until 11:50.
    joiner = await at(store, clock, 50, "j50")
    assert await watch(store, clock) == 1
    # 11:45: accepted while open, but the watch only looks at 11:52, after it closed
    # (11:50): it joins all the same, and the incident is open until 12:45.
    late = await at(store, clock, 105, "j105")
    assert await watch(store, clock, 112) == 1
    incident = await store.get_incident(number_1)
    assert members(incident) == {i: UP for i in [*first, joiner, late]}
    assert incident.closes_at == T10_00 + timedelta(minutes=165)  # 12:45
    for complaint_id in (joiner, late):
        complaint = await store.get(complaint_id)
        assert complaint.incident_id == str(number_1)
        assert complaint.level == "provincial"

    # 12:50, after it closed: not a member, and not enough for an incident of its own...
    after = await at(store, clock, 170, "n170")
    assert await watch(store, clock) == 0
    assert (await store.get(after)).incident_id is None
    # ... until two more come within the window: incident number 2.
    more = [await at(store, clock, m, f"n{m}") for m in (180, 190)]
    assert await watch(store, clock) == 1
    number_2 = incident_id("fault_repair", "rural", 2)
    second = await store.get_incident(number_2)
    assert second.number == 2
    assert second.declared_at == T10_00 + timedelta(minutes=190)
    assert members(second) == {i: UP for i in [after, *more]}
    assert len((await store.get_incident(number_1)).members) == 5  # unchanged
    assert await watch(store, clock) == 0


async def test_members_that_cannot_go_up_are_linked_and_the_incident_says_why(
    bursty: ComplaintStore, clock: FixedClock
) -> None:
    store = bursty
    one = await at(store, clock, 0, "one")
    refused = await at(store, clock, 5, "refused")
    ctx = CommandContext(AGENT.actor, "intake", clock(), "hotline")
    await store.execute(
        refused,
        lambda c: c.refuse(RefusalReason.OUT_OF_SCOPE, "第三方", "应用提供商", ctx),
        ctx=ctx,
    )
    three = await at(store, clock, 10, "three")
    assert await watch(store, clock) == 0  # the refused one does not count: two of three

    appealed = await at(store, clock, 20, "appealed")
    appeal = CommandContext(AGENT.actor, "escalation", clock(), "regulator")
    await store.execute(
        appealed,
        lambda c: c.escalate(
            EscalationTrigger.REGULATOR_APPEAL,
            "申诉",
            Level.HEADQUARTERS,
            BURSTY,
            appeal,
            regulator_ref="MIIT-SS-2026-1",
            regulator_due_at=clock() + timedelta(days=10),
        ),
        ctx=appeal,
    )
    assert await watch(store, clock) == 1  # at headquarters already, it still counts

    number_1 = incident_id("fault_repair", "rural", 1)
    incident = await store.get_incident(number_1)
    assert members(incident) == {
        one: UP,
        refused: {"done": "linked", "why": "refused"},
        three: UP,
        appealed: {"done": "linked", "why": "at_headquarters"},
    }
    still_refused = await store.get(refused)
    assert (still_refused.incident_id, still_refused.status) == (str(number_1), "refused")
    assert still_refused.escalations == []
    at_the_top = await store.get(appealed)
    assert at_the_top.incident_id == str(number_1)
    assert [e["trigger"] for e in at_the_top.escalations] == ["regulator_appeal"]


@pytest.fixture
async def esc(
    settings: Settings, clock: FixedClock, token: TokenFactory, tmp_path: Path
) -> AsyncIterator[Api]:
    """The escalation service under the bursty policy, its watches off (the test runs them)."""
    policy = tmp_path / "bursty.toml"
    policy.write_text(BURSTY_TOML, encoding="utf-8")
    quiet = settings.model_copy(update={"deadline_watch_enabled": False, "policy_path": policy})
    async with serving(create_app(quiet, clock=clock), token) as client:
        yield client


def store_of(api: Api) -> ComplaintStore:
    store: ComplaintStore = api.client._transport.app.state.store  # type: ignore[attr-defined]
    return store


async def test_incidents_are_listed_and_read_with_every_complaint(
    esc: Api, clock: FixedClock
) -> None:
    store = store_of(esc)
    rural = [await at(store, clock, m, f"r{m}") for m in (0, 5, 10)]
    urban = [await at(store, clock, m, f"u{m}", area="urban") for m in (12, 14, 16)]
    assert await watch(store, clock) == 2
    await catch_up(store, SummaryProjection(store), ChainProjection())
    rural_id = incident_id("fault_repair", "rural", 1)
    urban_id = incident_id("fault_repair", "urban", 1)

    listed = await esc.get("/incidents", role="regulator")
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    # Declared at the same moment: newest first, then by id.
    assert [i["id"] for i in items] == sorted([str(rural_id), str(urban_id)], reverse=True)
    by_area = {i["area"]: i for i in items}
    assert by_area["rural"] == {
        "id": str(rural_id),
        "number": 1,
        "category": "fault_repair",
        "area": "rural",
        "declared_at": "2026-11-23T02:16:00Z",
        "window": {"from": "2026-11-23T02:00:00Z", "to": "2026-11-23T03:10:00Z", "open": True},
        "members": 3,
        "escalated": 3,
    }
    assert by_area["urban"]["window"]["from"] == "2026-11-23T02:12:00Z"

    page = (await esc.get("/incidents", limit="1")).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = (await esc.get("/incidents", limit="1", cursor=page["next_cursor"])).json()
    assert [i["id"] for i in page["items"] + rest["items"]] == [i["id"] for i in items]
    assert rest["next_cursor"] is None
    assert (await esc.get("/incidents", cursor="not-a-cursor")).status_code == 422

    only = (await esc.get("/incidents", area="urban")).json()["items"]
    assert [i["id"] for i in only] == [str(urban_id)]
    assert (await esc.get("/incidents", category="billing")).json()["items"] == []
    assert (await esc.get("/incidents", open="false")).json()["items"] == []
    clock.advance(timedelta(hours=1))  # 11:16: rural closed at 11:10, urban at 11:16
    closed = (await esc.get("/incidents", open="false")).json()["items"]
    assert [i["id"] for i in closed] == [str(rural_id)]
    still = (await esc.get("/incidents", open="true")).json()["items"]
    assert [i["id"] for i in still] == [str(urban_id)]

    read = await esc.get(f"/incidents/{rural_id}", role="analyst")
    assert read.status_code == 200, read.text
    body = read.json()
    assert (body["threshold"], body["window_minutes"]) == (3, 60)
    assert body["window"] == {
        "from": "2026-11-23T02:00:00Z",
        "to": "2026-11-23T03:10:00Z",
        "open": False,
    }
    assert body["complaints"] == [
        {
            "complaint_id": str(complaint_id),
            "accepted_at": accepted,
            "done": "escalated",
            "from_level": "city",
            "to_level": "provincial",
            "why": None,
            "status": "escalated",
            "level": "provincial",
        }
        for complaint_id, accepted in zip(
            rural,
            ["2026-11-23T02:00:00Z", "2026-11-23T02:05:00Z", "2026-11-23T02:10:00Z"],
            strict=True,
        )
    ]
    complaint = (await esc.get(f"/complaints/{rural[0]}")).json()
    assert complaint["incident_id"] == str(rural_id)
    listed_complaints = (await esc.get("/complaints", limit="200")).json()["items"]
    assert {c["id"]: c["incident_id"] for c in listed_complaints} == {
        **{str(i): str(rural_id) for i in rural},
        **{str(i): str(urban_id) for i in urban},
    }

    # A member the read model has not seen shows no status.
    async with store.engine.begin() as conn:
        await conn.execute(
            delete(complaint_summaries).where(complaint_summaries.c.complaint_id == str(rural[2]))
        )
    unseen = (await esc.get(f"/incidents/{rural_id}")).json()["complaints"][2]
    assert (unseen["done"], unseen["status"], unseen["level"]) == ("escalated", None, None)

    missing = await esc.get(f"/incidents/{uuid5(NAMESPACE, 'no such incident')}")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert (await esc.client.get(f"/incidents/{rural_id}")).status_code == 401
    assert (await esc.client.get("/incidents")).status_code == 401

    # The incident's events are in the audit chain (about many complaints: no complaint_id).
    assert (await esc.client.post("/audit/checkpoints", headers=esc.headers("analyst"))).is_success
    export = await esc.client.get("/audit/export", headers=esc.headers("analyst"))
    lines = export.content.splitlines(keepends=True)
    checkpoints = (await esc.get("/audit/checkpoints", role="analyst")).json()
    assert verify(lines, checkpoints, key=pinned_key()).valid
    records = [json.loads(line) for line in lines[:-1]]
    incident_lines = [r for r in records if r["aggregate"] in ("MajorIncident", "IncidentSeries")]
    assert sorted((r["aggregate"], r["type"]) for r in incident_lines) == sorted(
        [("IncidentSeries", "Started"), ("IncidentSeries", "Declared")] * 2
        + [("MajorIncident", "Declared")] * 2
    )
    assert {r["complaint_id"] for r in incident_lines} == {None}
