"""Which rule of the policy applies, and what the limit it starts looks like, written out by hand.

NOW is Monday 23 Nov 2026, 10:00 in Beijing (02:00 UTC); a working day ends at 23:59:59 in
Beijing (15:59:59 UTC); November and December 2026 have no public holiday in China.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.domain.errors import PolicyError
from shared.domain.lifecycle import Opening
from shared.domain.policy import (
    DEFAULT_POLICY_PATH,
    Policy,
    facts_of,
    facts_of_intake,
    load_policies,
)

pytestmark = pytest.mark.usefixtures("server_in_beijing")

POLICY = Policy.load()
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)  # Saturday 21 Nov, 09:00 in Beijing


def facts(**overrides: str | None) -> dict[str, str | None]:
    """A fixed-line billing complaint by phone at city level, unless overridden."""
    base = facts_of(
        channel="hotline",
        business_type="fixed_line",
        category="billing",
        vip_tier=None,
        area=None,
        level="city",
    )
    return {**base, **overrides}


def by_name(deadlines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in deadlines}


def z(text: str) -> str:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).isoformat()


def policy(limits: str) -> Policy:
    return Policy.from_toml(f"version = 'hand'\n{limits}")


def rule(name: str, amount: str | float, unit: str, applies: str = "", **extra: str) -> str:
    lines = [
        "[[limit]]",
        f"name = '{name}'",
        f"amount = {amount}",
        f"unit = '{unit}'",
        "met_by = ['Replied']",
        f"source = '{amount} {unit}'",
    ]
    if applies:
        lines.append(f"applies = {{ {applies} }}")
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ choosing the rule


@pytest.mark.parametrize(
    ("first", "second", "chosen"),
    [
        # Equally specific: the shortest wins, whatever the order in the file. A working day
        # counts as 24 × 7 / 5 = 33.6 hours when rules of different units are compared.
        (("33", "hours"), ("1", "working_days"), "33 hours"),
        (("1", "working_days"), ("34", "hours"), "1 working_days"),
        (("34", "hours"), ("1", "working_days"), "1 working_days"),
        (("1", "calendar_days"), ("24.5", "hours"), "1 calendar_days"),
        (("23.5", "hours"), ("1", "calendar_days"), "23.5 hours"),
        (("2", "calendar_days"), ("1", "working_days"), "1 working_days"),
        (("1", "working_days"), ("20", "hours"), "20 hours"),
        (("6", "working_days"), ("2", "working_days"), "2 working_days"),
    ],
)
def test_among_equally_specific_rules_the_shortest_wins(
    first: tuple[str, str], second: tuple[str, str], chosen: str
) -> None:
    hand = policy(
        rule("reply", first[0], first[1], "business_type = ['mobile']")
        + rule("reply", second[0], second[1], "complexity = ['complex']")
        + rule("reply", 100, "hours")
    )
    (deadline,) = hand.deadlines(
        facts(business_type="mobile", complexity="complex"), accepted_at=NOW
    )
    assert deadline["source"] == chosen


def test_the_most_specific_rule_wins_even_when_longer() -> None:
    hand = policy(
        rule("reply", 1, "hours")
        + rule("reply", 2, "hours", "business_type = ['mobile']")
        + rule("reply", 90, "hours", "business_type = ['mobile'], complexity = ['complex']")
    )
    mobile = facts(business_type="mobile")
    assert hand.deadlines(mobile, accepted_at=NOW)[0]["source"] == "2 hours"
    assert hand.deadlines({**mobile, "complexity": "complex"}, accepted_at=NOW)[0]["amount"] == 90
    assert hand.deadlines(facts(), accepted_at=NOW)[0]["amount"] == 1


def test_a_cap_only_shortens_and_applies_only_with_a_rule() -> None:
    hand = policy(
        rule("reply", 3, "working_days")
        + rule("reply", 1, "working_days", "vip_tier = ['supreme']", cap="true")
        + rule("reply", 9, "working_days", "vip_tier = ['gold']", cap="true")
        + rule("reply", 3, "working_days", "vip_tier = ['platinum']", cap="true")
        + rule("callback", 1, "hours", "vip_tier = ['supreme']", cap="true")
    )
    supreme = by_name(hand.deadlines(facts(vip_tier="supreme"), accepted_at=NOW))
    assert sorted(supreme) == ["reply"]  # a cap alone starts nothing
    assert supreme["reply"]["due_at"] == z("2026-11-24T15:59:59")  # 1 working day
    gold = by_name(hand.deadlines(facts(vip_tier="gold"), accepted_at=NOW))
    assert gold["reply"]["due_at"] == z("2026-11-26T15:59:59")  # 3: the cap never lengthens
    # A cap as long as the rule: the rule stands (its own source).
    (platinum,) = hand.deadlines(facts(vip_tier="platinum"), accepted_at=NOW)
    assert platinum["source"] == "3 working_days" and platinum["due_at"] == gold["reply"]["due_at"]


def test_the_rules_chosen_for_some_facts() -> None:
    chosen = POLICY.rules_for(facts(business_type="mobile", vip_tier="diamond"))
    summary = [(r.name, r.amount, r.unit.value, [c.amount for c in caps]) for r, caps in chosen]
    assert summary == [
        ("investigation", 72, "hours", []),
        ("reply", 2, "working_days", [1]),  # mobile: 2 working days, the diamond cap: 1
        ("resolution", 5, "working_days", []),
        ("operator_answer", 15, "calendar_days", []),
        ("escalation_assignment", 4, "hours", []),
        ("escalation_review", 3, "working_days", []),  # at city level
        ("reinvestigation", 72, "hours", []),
        ("reply_after_review", 3, "working_days", []),
        ("callback", 2, "working_days", []),
        ("archive", 5, "working_days", []),
    ]


# ------------------------------------------------------------ the limits a complaint gets


def test_a_letter_assessed_complex_gets_the_complex_investigation() -> None:
    # Received Saturday 21 Nov, accepted Monday 23 Nov 10:00, then assessed as complex: the
    # limits that depend on complexity are chosen again, counted from the acceptance.
    letter = facts(channel="letter", complexity="complex")
    chosen = by_name(
        POLICY.deadlines(
            letter,
            accepted_at=NOW,
            received_at=RECEIVED,
            only=POLICY.selecting_on("complexity"),
        )
    )
    assert sorted(chosen) == ["investigation", "reply", "resolution"]
    # 5 working days: 24, 25, 26, 27, 30 Nov.
    assert chosen["investigation"]["due_at"] == z("2026-11-30T15:59:59")
    assert chosen["investigation"]["amount"] == 5
    assert chosen["investigation"]["starts_at"] == z("2026-11-23T02:00")
    assert chosen["reply"]["due_at"] == z("2026-12-01T15:59:59")  # 6 working days
    assert chosen["resolution"]["due_at"] == z("2026-12-01T15:59:59")  # 6 (complex billing)


def test_a_letter_gets_every_limit_at_acceptance_and_the_acceptance_counts_from_receipt() -> None:
    got = POLICY.deadlines(facts(channel="letter"), accepted_at=NOW, received_at=RECEIVED)
    assert got[0] == {
        "name": "acceptance",
        "opened_by": "accepted",
        "bound_to": None,
        "level": "city",
        "starts_at": "2026-11-21T01:00:00+00:00",
        "due_at": "2026-11-22T01:00:00+00:00",  # 24 hours after receipt
        "amount": 24,
        "unit": "hours",
        "met_by": ["Accepted"],
        "target": 1.0,
        "pausable": False,
        "source": "training manual (seed 003): accept non-live complaints within 24 hours",
        "policy_version": "2026.2",
        "calendar": "official",
    }
    assert [(d["name"], d["due_at"]) for d in got[1:]] == [
        ("investigation", z("2026-11-26T02:00")),  # 72 hours from acceptance
        ("reply", z("2026-11-26T15:59:59")),  # 3 working days
        ("resolution", z("2026-11-30T15:59:59")),  # 5 working days
        ("operator_answer", z("2026-12-08T02:00")),  # 15 calendar days
    ]
    resolution = got[3]
    assert resolution["target"] == 0.98 and resolution["pausable"] is True
    assert resolution["starts_at"] == z("2026-11-23T02:00")


def test_without_a_receipt_time_a_letters_acceptance_counts_from_acceptance() -> None:
    (acceptance,) = POLICY.deadlines(facts(channel="letter"), accepted_at=NOW, only=["acceptance"])
    assert acceptance["starts_at"] == z("2026-11-23T02:00")
    assert acceptance["due_at"] == z("2026-11-24T02:00")


def test_a_limit_opened_after_acceptance_is_bound_to_its_status() -> None:
    replied = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # Wednesday 25 Nov, 12:00 in Beijing
    (callback,) = POLICY.deadlines(
        facts(level="provincial"), accepted_at=replied, opening=Opening.REPLIED
    )
    assert callback == {
        "name": "callback",
        "opened_by": "replied",
        "bound_to": "replied",
        "level": "provincial",
        "starts_at": "2026-11-25T04:00:00+00:00",
        "due_at": "2026-11-27T15:59:59+00:00",  # Thursday 26, Friday 27 Nov
        "amount": 2,
        "unit": "working_days",
        "met_by": ["CallbackRecorded"],
        "target": 1.0,
        "pausable": False,
        "source": "policy choice: the callback (回访) within 2 working days of the reply "
        "(seed 000 §2.2.4 and seed 002 §6: 'within the set time')",
        "policy_version": "2026.2",
        "calendar": "official",
    }
    reopened = POLICY.deadlines(facts(), accepted_at=replied, opening=Opening.REOPENED)
    assert [(d["name"], d["bound_to"], d["due_at"]) for d in reopened] == [
        ("reinvestigation", None, z("2026-11-28T04:00")),  # 72 hours
        ("reply_after_review", None, z("2026-11-30T15:59:59")),  # Thu 26, Fri 27, Mon 30
    ]


def test_only_the_named_limits_are_chosen() -> None:
    got = POLICY.deadlines(facts(), accepted_at=NOW, only=["reply", "callback"])
    assert [d["name"] for d in got] == ["reply"]  # the callback opens on a reply, not here
    assert POLICY.deadlines(facts(), accepted_at=NOW, only=[]) == []


def test_a_vip_cap_shortens_the_reply_to_one_working_day() -> None:
    (reply,) = POLICY.deadlines(facts(vip_tier="supreme"), accepted_at=NOW, only=["reply"])
    assert (reply["amount"], reply["due_at"]) == (1, z("2026-11-24T15:59:59"))
    assert reply["source"] == (
        "seed 003: reply with the result within 3 working days; shortened by a cap: "
        "policy choice: priority handling for supreme and diamond customers (seed 004)"
    )
    # Only shorter: the 3-working-day rule's clock still stands still while paused, and it
    # is still met by the reply with the rule's target.
    assert (reply["pausable"], reply["met_by"], reply["target"]) == (True, ["Replied"], 1.0)


def test_the_limitation_period_counts_beijing_calendar_months() -> None:
    # 31 Jul 2026 01:00 in Beijing is still 30 Jul in UTC. Five Beijing months back is
    # 28 Feb 2026 01:00 (no 31 Feb): a fee dispute of 28 Feb 12:00 is within the period.
    now = datetime(2026, 7, 30, 17, 0, tzinfo=UTC)
    occurred = datetime(2026, 2, 28, 4, 0, tzinfo=UTC)  # 12:00 in Beijing
    assert not POLICY.is_time_barred("billing", occurred, now)
    assert POLICY.is_time_barred("billing", occurred - timedelta(hours=12), now)


# ------------------------------------------------------------------- the rest of the policy


def test_the_limits_selecting_on_a_fact() -> None:
    assert POLICY.selecting_on("complexity") == ["investigation", "reply", "resolution"]
    assert POLICY.selecting_on("level") == ["escalation_review"]
    assert POLICY.selecting_on("area") == ["repair"]
    assert POLICY.selecting_on("vip_tier") == ["reply"]  # the cap selects on it
    assert POLICY.limit_names == (
        "acceptance",
        "investigation",
        "reply",
        "resolution",
        "repair",
        "installation",
        "operator_answer",
        "escalation_assignment",
        "escalation_review",
        "reinvestigation",
        "reply_after_review",
        "callback",
        "archive",
    )


def test_an_alert_starts_the_same_limit_again_for_a_working_day() -> None:
    missed = {
        "key": "escalation_review.2",
        "name": "escalation_review",
        "opened_by": "escalated",
        "bound_to": "escalated",
        "level": "headquarters",
        "met_by": ["Reviewed"],
        "target": 0.9,
        "pausable": True,
        "due_at": "2026-11-30T15:59:59+00:00",
        "amount": 5,
        "source": "policy choice: headquarters reviews within 5 working days (seed 002 §5)",
    }
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)  # Tuesday 1 Dec, 17:30 in Beijing
    assert POLICY.alert_follow_up(missed, at) == {
        "name": "escalation_review",
        "opened_by": "escalated",
        "bound_to": "escalated",
        "level": "headquarters",
        "met_by": ["Reviewed"],
        "target": 0.9,
        "pausable": True,
        "starts_at": "2026-12-01T09:30:00+00:00",
        "due_at": "2026-12-02T15:59:59+00:00",  # the end of Wednesday 2 Dec
        "amount": 1,
        "unit": "working_days",
        "source": "policy choice: headquarters supervisors are alerted; the limit runs again "
        "for 1 working day",
        "policy_version": "2026.2",
        "calendar": "official",
        "follows": "escalation_review.2",
    }
    first = {k: v for k, v in missed.items() if k not in ("key", "pausable")}
    again = POLICY.alert_follow_up(first, at)
    assert again["follows"] == "escalation_review"  # no key: its name
    assert again["pausable"] is False


@pytest.mark.parametrize(
    ("category", "occurred", "barred"),
    [
        # Fee disputes: 5 months before Mon 23 Nov 10:00 in Beijing is 23 Jun 10:00 (02:00 UTC).
        ("billing", datetime(2026, 6, 23, 2, 0, tzinfo=UTC), False),
        ("billing", datetime(2026, 6, 23, 1, 59, 59, 999999, tzinfo=UTC), True),
        # Anything else: 24 months, Mon 23 Nov 2024 10:00.
        ("network_coverage", datetime(2024, 11, 23, 2, 0, tzinfo=UTC), False),
        ("network_coverage", datetime(2024, 11, 23, 1, 59, 59, 999999, tzinfo=UTC), True),
        ("network_coverage", datetime(2026, 6, 1, tzinfo=UTC), False),
    ],
)
def test_limitation_periods_to_the_microsecond(
    category: str, occurred: datetime, barred: bool
) -> None:
    assert POLICY.is_time_barred(category, occurred, NOW) is barred


def test_a_policy_without_a_rule_for_everyone_in_some_situation_is_not_put_in_force() -> None:
    hand = policy(
        rule("reply", 1, "hours")
        + rule("callback", 1, "hours", "vip_tier = ['gold']", opens_on="'replied'")
        + rule("archive", 1, "hours", cap="true", opens_on="'callback_done'")
        + rule("review", 1, "hours", opens_on="'escalated'")
    )
    with pytest.raises(PolicyError) as refused:
        hand.check_in_force()
    assert str(refused.value) == (
        "policy hand: no rule without `applies` opens on ['reopened', 'replied', "
        "'callback_done']; a complaint entering that situation would wait with no limit running"
    )


@pytest.mark.parametrize(
    ("applies", "message"),
    [
        # A misspelt fact would never match, and the rule would silently apply to nobody.
        ("complexty = ['complex']", "unknown facts ['complexty']"),
        ("Level = ['headquarters']", "unknown facts ['Level']"),
    ],
)
def test_a_rule_naming_an_unknown_fact_is_refused(applies: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        policy(rule("investigation", 5, "working_days", applies))
    with pytest.raises(PolicyError, match="unknown facts"):
        Policy.from_toml(
            "version = 'v'\n[[limit]]\nname='x'\namount=1\nunit='hours'\nmet_by=['Replied']\n"
            "[[average]]\nlimit='x'\ngroup='g'\nhours=1\napplies={aera=['rural']}"
        )


def test_an_invalid_file_says_what_is_wrong() -> None:
    with pytest.raises(PolicyError) as refused:
        Policy.from_toml("version = 'v'")
    assert str(refused.value).startswith("invalid policy file: 1 validation error")
    with pytest.raises(PolicyError) as broken:
        Policy.from_toml("version = ")
    assert str(broken.value).startswith("invalid policy file: Invalid value")


def test_report_figures_match_their_facts() -> None:
    towns, rural = POLICY.document.average
    assert towns.matches({"business_type": "broadband", "area": "suburban_county"})
    assert not towns.matches({"business_type": "broadband", "area": "rural"})
    assert not towns.matches({"business_type": "mobile", "area": "urban"})
    assert not towns.matches({"business_type": "broadband"})  # area unknown
    assert rural.matches({"business_type": "broadband", "area": "rural", "vip_tier": "gold"})


def test_the_facts_of_an_intake() -> None:
    intake = {
        "channel": "letter",
        "business_type": "broadband",
        "category": "fault_repair",
        "customer": {"id": "c1", "vip_tier": "gold"},
        "area": "rural",
    }
    assert facts_of_intake(intake, "complex", "provincial") == {
        "channel": "letter",
        "business_type": "broadband",
        "category": "fault_repair",
        "vip_tier": "gold",
        "area": "rural",
        "complexity": "complex",
        "level": "provincial",
    }
    bare = {k: v for k, v in intake.items() if k != "area"} | {"customer": {"id": "c1"}}
    assert facts_of_intake(bare) == {
        "channel": "letter",
        "business_type": "broadband",
        "category": "fault_repair",
        "vip_tier": None,
        "area": None,
        "complexity": None,
        "level": None,
    }


def test_policy_versions_for_reports(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    (tmp_path / "b.toml").write_text("version = 'b'\n" + rule("reply", 1, "hours"))
    (tmp_path / "notes.txt").write_text("version = 'c'\n" + rule("reply", 1, "hours"))
    found = load_policies(tmp_path, POLICY)
    assert sorted(found) == ["2026.2", "b"]
    assert found["2026.2"] is POLICY  # the one in force, not its copy
    assert found["b"].document.limit[0].amount == 1
    assert list(load_policies(tmp_path / "a.toml", POLICY)) == ["2026.2"]  # not a directory
    clash = tmp_path / "c.toml"
    clash.write_text("version = 'b'\n" + rule("reply", 2, "hours"))
    with pytest.raises(PolicyError) as refused:
        load_policies(tmp_path, POLICY)
    assert str(refused.value) == f"{clash} gives policy version 'b' other rules"


def test_a_due_time_counts_from_the_start_in_any_offset() -> None:
    hand = policy(rule("reply", 0.25, "hours"))
    beijing = NOW.astimezone(POLICY.tz)
    (reply,) = hand.deadlines(facts(), accepted_at=beijing)
    assert reply["due_at"] == "2026-11-23T02:15:00+00:00"
    assert reply["starts_at"] == "2026-11-23T02:00:00+00:00"
    assert NOW + timedelta(minutes=15) == datetime.fromisoformat(reply["due_at"])
