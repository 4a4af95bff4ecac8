"""The major-incident rules, on the aggregates alone: what counts, what declares, who joins,
how long an incident stays open."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from shared.domain.codes import RefusalReason
from shared.domain.complaint import Complaint
from shared.domain.context import Actor, CommandContext
from shared.domain.indexes import IncidentSeries, MajorIncident
from shared.domain.policy import DEFAULT_POLICY_PATH, Policy
from tests.unit.test_transitions import NOW, new_complaint

#: Three complaints within 60 minutes.
POLICY = Policy.from_toml(
    DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace("threshold = 20", "threshold = 3")
)


def ctx(minutes: int, who: str = "incident-watch") -> CommandContext:
    return CommandContext(Actor(who, "system"), "test", NOW + timedelta(minutes=minutes))


def accepted(minutes: int, *, area: str = "rural", category: str = "fault_repair") -> Complaint:
    return new_complaint(
        at=NOW + timedelta(minutes=minutes),
        policy=POLICY,
        customer={"id": f"c-{uuid4()}", "name": "n", "phone": "13800000000"},
        business_type="broadband",
        category=category,
        area=area,
    )


def refused(minutes: int) -> Complaint:
    complaint = accepted(minutes)
    complaint.refuse(RefusalReason.OUT_OF_SCOPE, "why", "where", ctx(minutes, "agent-1"))
    return complaint


def series() -> IncidentSeries:
    return IncidentSeries.start("fault_repair", "rural", NOW)


def test_a_refused_complaint_does_not_count_but_is_linked() -> None:
    two = [accepted(0), accepted(10)]
    out = refused(5)
    assert series().gather(None, [*two, out], POLICY, ctx(10)) is None
    assert all(c.incident_id is None for c in [*two, out])  # nothing recorded

    third = accepted(20)
    incident = series().gather(None, [*two, out, third], POLICY, ctx(20))
    assert incident is not None
    assert [m["complaint_id"] for m in incident.members] == [
        str(c.id)
        for c in (two[0], out, two[1], third)  # in the order accepted
    ]
    assert [m["done"] for m in incident.members] == [
        "escalated",
        "linked",
        "escalated",
        "escalated",
    ]
    assert out.incident_id == str(incident.id) and out.status == "refused"
    # Open until one window after the last that counts.
    assert incident.closes_at == NOW + timedelta(minutes=80)


def test_only_complaints_within_the_window_before_now_declare_and_join() -> None:
    early, *burst = [accepted(m) for m in (0, 30, 50, 70)]
    incident = series().gather(None, [early, *burst], POLICY, ctx(70))
    assert incident is not None
    assert [m["complaint_id"] for m in incident.members] == [str(c.id) for c in burst]
    assert early.incident_id is None  # 10:00 is not within (10:10, 11:10]
    assert incident.first_member_at == NOW + timedelta(minutes=30)


def test_complaints_of_another_category_or_area_never_join() -> None:
    others = [accepted(0, area="urban"), accepted(5, category="billing"), accepted(10)]
    assert series().gather(None, others, POLICY, ctx(10)) is None
    assert all(c.incident_id is None for c in others)


def test_joiners_keep_it_open_one_window_after_each_but_refused_ones_do_not() -> None:
    the_series = series()
    incident = the_series.gather(None, [accepted(m) for m in (0, 10, 20)], POLICY, ctx(20))
    assert incident is not None and the_series.current == incident.id
    assert incident.closes_at == NOW + timedelta(minutes=80)
    # All looked at once, late: 12:15 joins only because 10:50 and 11:15 came first.
    chain = [accepted(50), accepted(135), refused(79), accepted(75), refused(190)]
    after = accepted(200)  # after 13:15: the refused one at 13:10 did not keep it open
    assert the_series.gather(incident, [*chain, after], POLICY, ctx(200)) is incident
    assert [m["complaint_id"] for m in incident.members[3:]] == [
        str(c.id) for c in (chain[0], chain[3], chain[2], chain[1], chain[4])
    ]
    assert [m["done"] for m in incident.members[3:]] == [
        "escalated",
        "escalated",
        "linked",
        "escalated",
        "linked",
    ]
    assert incident.closes_at == NOW + timedelta(minutes=135 + 60)
    assert after.incident_id is None
    # Closed at 13:15 (135 + 60 minutes); joining again changes nothing.
    assert not incident.is_open(NOW + timedelta(minutes=200))
    assert the_series.gather(incident, [*chain, after], POLICY, ctx(200)) is None


def test_after_it_closed_a_new_burst_is_the_next_incident() -> None:
    the_series = series()
    first = the_series.gather(None, [accepted(m) for m in (0, 10, 20)], POLICY, ctx(20))
    assert first is not None
    # While it is open, a burst only joins it.
    assert the_series.gather(first, [accepted(m) for m in (30, 40)], POLICY, ctx(40)) is first
    assert the_series.gather(first, [], POLICY, ctx(41)) is None
    burst = [accepted(m) for m in (101, 110, 120)]  # first closed at 11:40 (40 + 60)
    second = the_series.gather(first, burst, POLICY, ctx(120))
    assert isinstance(second, MajorIncident) and second is not first
    assert (second.number, second.id) == (2, MajorIncident.id_for("fault_repair", "rural", 2))
    assert the_series.incidents == [first.id, second.id]
    assert len(first.members) == 5
    assert [m["complaint_id"] for m in second.members] == [str(c.id) for c in burst]


def test_an_incident_declared_by_the_first_version_still_replays() -> None:
    """Its Declared event held the fixed window's start, the complaints and the one it
    escalated; rebuilding the read models replays it with today's code."""
    start = NOW.replace(minute=0)
    first, second = str(uuid4()), str(uuid4())
    stored = object.__new__(MajorIncident.Declared)  # as the first version stored it
    stored.__dict__.update(
        originator_id=uuid4(),
        originator_version=1,
        timestamp=NOW,
        originator_topic="shared.domain.indexes:MajorIncident",
        category="fault_repair",
        area="rural",
        window_start=start,
        complaint_ids=[first, second],
        escalated=first,
    )
    replayed = stored.mutate(None)
    assert isinstance(replayed, MajorIncident)
    assert [(m["complaint_id"], m["done"]) for m in replayed.members] == [
        (first, "escalated"),
        (second, "linked"),
    ]
    assert replayed.first_member_at == start and replayed.threshold == 2
