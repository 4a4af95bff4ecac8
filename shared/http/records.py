"""The typed parts of a complaint's view: what each recorded step holds, as the aggregate keeps
it (`shared.domain.complaint`), so a generated client gets a model for each, not a bare dict.

Times are given back exactly as they were recorded (RFC 3339 strings; the schema says
`date-time`). They are typed dicts, not models: a complaint of 1,000 events carries 1,000
evidence records, and checking dicts costs a third of building models. A key the aggregate
records but a type does not name would be dropped from views: a test holds the two together
(`tests/unit/test_records.py`). Keys an older aggregate did not record yet are optional.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, NotRequired

from pydantic import Field, WithJsonSchema
from typing_extensions import TypedDict

#: A recorded time, as recorded (a string, or a datetime the event kept as one).
Moment = Annotated[datetime | str, WithJsonSchema({"type": "string", "format": "date-time"})]


class Actor(TypedDict):
    """Who gave a command: the token's subject and the role it acted in."""

    id: Annotated[str, Field(examples=["inv-0042"])]
    role: Annotated[str, Field(examples=["investigator"])]


class CustomerShown(TypedDict):
    """The customer as the reader's role may see them (phone and e-mail masked for most)."""

    id: Annotated[str, Field(examples=["cust-000123"])]
    name: Annotated[str, Field(examples=["张伟"])]
    phone: Annotated[str, Field(examples=["138****1234"])]
    email: NotRequired[str | None]
    vip_tier: NotRequired[Annotated[str | None, Field(examples=["gold"])]]


class EvidenceRecord(TypedDict):
    kind: Annotated[str, Field(examples=["call_record"])]
    ref: str
    summary: NotRequired[str]
    at: NotRequired[Annotated[Moment, Field(description="absent on evidence given at intake")]]
    by: NotRequired[Actor]


class Refusal(TypedDict):
    reason: Annotated[str, Field(examples=["out_of_scope"])]
    explanation: str
    redirect: str
    override_reason: NotRequired[str | None]
    repeats: NotRequired[
        Annotated[
            dict[str, str] | None,
            Field(description="the earlier complaint a repeat refusal points to: id, status"),
        ]
    ]
    at: Moment
    by: NotRequired[Actor]


class Assignment(TypedDict):
    department: Annotated[str, Field(examples=["network-ops-shenzhen"])]
    investigator: Annotated[str, Field(examples=["inv-0042"])]
    complexity: Annotated[str, Field(examples=["simple"])]
    at: Moment


class Extension(TypedDict):
    deadline: Annotated[str, Field(examples=["reply"])]
    reason: str
    previous_due_at: NotRequired[Moment]
    new_due_at: Moment
    moved: NotRequired[Annotated[list[str], Field(description="every limit it moved")]]
    progress_notice: str
    at: Moment


class Findings(TypedDict):
    conclusion: str
    basis: str
    root_cause: str
    upheld: bool
    at: Moment
    by: NotRequired[Actor]


class RemedyRecord(TypedDict):
    type: Annotated[str, Field(examples=["refund"])]
    amount: NotRequired[Annotated[str | None, Field(examples=["128.50"], description="yuan")]]


class Resolution(TypedDict):
    measures: list[str]
    remedies: list[RemedyRecord]
    owner: str
    due_at: Moment
    at: Moment


class Reply(TypedDict):
    channel: Annotated[str, Field(examples=["sms"])]
    conclusion: str
    basis: str
    plan: str
    execution: str
    at: Moment
    by: NotRequired[Actor]


class Escalation(TypedDict):
    trigger: Annotated[str, Field(examples=["customer_dissatisfied"])]
    reason: str
    from_level: NotRequired[Annotated[str, Field(examples=["city"])]]
    to_level: Annotated[str, Field(examples=["provincial"])]
    regulator_ref: NotRequired[str | None]
    status_before: NotRequired[str | None]
    at: Moment
    by: NotRequired[Actor]


class Handler(TypedDict):
    """The person named to handle the complaint at an escalated level."""

    handler: str
    level: str
    at: Moment
    by: NotRequired[Actor]


class Recalculation(TypedDict):
    """Limits counted again once a policy version made an estimated calendar official."""

    changes: Annotated[
        list[dict[str, str]],
        Field(
            description="each: key, previous_due_at, due_at, previous_policy_version, "
            "policy_version"
        ),
    ]
    at: Moment


class Review(TypedDict):
    outcome: Annotated[str, Field(examples=["upheld"])]
    notes: str
    level: NotRequired[str]
    at: Moment
    by: NotRequired[Actor]


class Callback(TypedDict):
    satisfaction: Annotated[str, Field(examples=["satisfied"])]
    resolved: bool
    comments: str
    at: Moment
    by: NotRequired[Actor]


class CallbackAttempt(TypedDict):
    """A callback that did not reach the customer."""

    comments: str
    at: Moment
    by: NotRequired[Actor]


class Alert(TypedDict):
    """A limit missed at headquarters, reported to its supervisors."""

    deadline: str
    reason: str
    at: Moment


class Notification(TypedDict):
    """A message to the customer, or a staff task (a letter to post, a call to make)."""

    id: Annotated[str, Field(examples=["reply-1"])]
    kind: Annotated[str, Field(examples=["reply"])]
    channel: Annotated[str, Field(examples=["sms"])]
    task: NotRequired[Annotated[bool, Field(description="staff carry it out, then confirm")]]
    requested_version: NotRequired[int | None]
    requested_at: Moment
    status: Annotated[str, Field(examples=["pending"], description="pending, sent or failed")]
    attempts: NotRequired[int]
    last_error: NotRequired[str | None]
    last_failed_at: NotRequired[Moment | None]
    sent_at: NotRequired[Moment | None]
    gateway_ref: NotRequired[str | None]
    confirmed_by: NotRequired[Actor | None]
    note: NotRequired[str | None]
    dates: NotRequired[Annotated[dict[str, str], Field(description="the dates it names")]]
    why: NotRequired[str | None]
