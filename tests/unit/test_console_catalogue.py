"""The console's two catalogues say the same things: every string and every code the API
answers with has a label in Chinese and in English."""

from __future__ import annotations

import tomllib
from enum import StrEnum

import pytest

from shared.console.commands import OFFERED
from shared.console.i18n import EN, ZH, Translator
from shared.domain.codes import (
    Area,
    BusinessType,
    Category,
    Channel,
    Complexity,
    DeadlineState,
    EscalationTrigger,
    EvidenceKind,
    IncidentAction,
    Level,
    NotEscalated,
    RefusalReason,
    RemedyType,
    ReplyChannel,
    ReviewOutcome,
    Role,
    Satisfaction,
    Status,
    VipTier,
)
from shared.domain.complaint import Complaint
from shared.domain.lifecycle import Command
from shared.domain.policy import DEFAULT_POLICY_PATH

CODES: dict[str, type[StrEnum]] = {
    "area": Area,
    "business_type": BusinessType,
    "category": Category,
    "channel": Channel,
    "state": DeadlineState,
    "level": Level,
    "reply_channel": ReplyChannel,
    "role": Role,
    "status": Status,
    "vip_tier": VipTier,
    # the command forms' choices
    "complexity": Complexity,
    "evidence_kind": EvidenceKind,
    "remedy_type": RemedyType,
    "trigger": EscalationTrigger,
    "review_outcome": ReviewOutcome,
    "satisfaction": Satisfaction,
    "refusal_reason": RefusalReason,
    # a major incident's page
    "incident_done": IncidentAction,
    "not_escalated": NotEscalated,
}


def test_every_command_the_pages_offer_has_a_name_in_both_languages() -> None:
    offered = [*OFFERED, Command.CONFIRM_NOTIFICATION]
    missing = [
        f"command.{c.value}" for c in offered for cat in (ZH, EN) if f"command.{c.value}" not in cat
    ]
    assert missing == []


def test_both_languages_have_the_same_strings() -> None:
    assert sorted(set(ZH) ^ set(EN)) == []


@pytest.mark.parametrize("kind", CODES)
def test_every_code_has_a_label_in_both_languages(kind: str) -> None:
    missing = [
        f"{kind}.{code.value}"
        for code in CODES[kind]
        for catalogue in (ZH, EN)
        if f"{kind}.{code.value}" not in catalogue
    ]
    assert missing == []


def test_an_unknown_code_is_shown_as_itself() -> None:
    t = Translator("zh")
    assert t.code("status", "accepted") == "已受理"
    assert t.code("limit", "a_limit_of_tomorrow") == "a_limit_of_tomorrow"
    assert Translator("fr").lang == "zh"


def test_every_limit_of_every_policy_has_a_label_in_both_languages() -> None:
    names = {
        limit["name"]
        for path in DEFAULT_POLICY_PATH.parent.glob("*.toml")
        for limit in tomllib.loads(path.read_text(encoding="utf-8")).get("limit", [])
    }
    assert names
    assert [n for n in sorted(names) if f"limit.{n}" not in ZH or f"limit.{n}" not in EN] == []


def test_every_event_of_a_complaint_has_a_label_in_both_languages() -> None:
    """The timeline shows each event by its label (`event.<class name>`, the history's
    `type`): every event class the aggregate defines has one, in both languages."""
    bases = {Complaint.Event, Complaint.Created}
    names = {
        name
        for name, value in vars(Complaint).items()
        if isinstance(value, type) and issubclass(value, Complaint.Event) and value not in bases
    }
    assert {"Accepted", "Escalated", "PersonalDataErased"} <= names
    missing = [n for n in sorted(names) for cat in (ZH, EN) if f"event.{n}" not in cat]
    assert missing == []
