"""Small aggregates saved in the same transaction as the complaints they concern, so the event
store's own optimistic concurrency enforces their rules: two complaints can never take one
acceptance number; two concurrent complaints of one customer thread are linked one after the
other, never both as the first; and a major incident is declared once, however many watchers
look, with every member complaint escalated or linked in the same save.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from shared.domain.codes import IncidentAction, NotEscalated, Status
from shared.domain.complaint import Complaint
from shared.domain.context import CommandContext
from shared.domain.policy import Policy
from shared.domain.upcasts import install as install_upcasts

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


class IncidentSeries(Aggregate):
    """The major incidents of one category and area, numbered in order; at most one is open.

    Its id is derived from (category, area) and each declaration is an event on it, so two
    watchers declaring at once collide in the store and only one declaration is saved.
    """

    id: UUID

    @staticmethod
    def id_for(category: str, area: str) -> UUID:
        return uuid5(NAMESPACE, f"incident-series:{category}:{area}")

    @event("Started")
    def __init__(self, *, category: str, area: str, timestamp: datetime) -> None:
        self.category = category
        self.area = area
        self.incidents: list[UUID] = []

    @classmethod
    def start(cls, category: str, area: str, at: datetime) -> IncidentSeries:
        series_id = cls.id_for(category, area)
        return cls(id=series_id, category=category, area=area, timestamp=at)  # type: ignore[call-arg]

    @property
    def current(self) -> UUID | None:
        """The latest incident, open or not."""
        return self.incidents[-1] if self.incidents else None

    def gather(
        self,
        current: MajorIncident | None,
        complaints: Sequence[Complaint],
        policy: Policy,
        ctx: CommandContext,
    ) -> MajorIncident | None:
        """Complaints of this category and area in no incident yet: those accepted while the
        current incident was open join it; else, with no incident open, a burst of them is
        declared the next incident. Returns the incident declared or grown, None if neither.

        Joining comes first: a complaint accepted while the incident was open belongs to it,
        even if the incident has closed since (the watch or the read model was behind)."""
        fresh = [
            c
            for c in complaints
            if c.incident_id is None
            and (c.intake["category"], c.intake.get("area")) == (self.category, self.area)
        ]
        if current is not None:
            if current.join(fresh, policy, ctx):
                return current
            if current.is_open(ctx.at):
                return None
            fresh = [c for c in fresh if c.accepted_at > current.closes_at]
        number = len(self.incidents) + 1
        incident = MajorIncident.declare(self.category, self.area, number, fresh, policy, ctx)
        if incident is not None:
            self._declared(incident_id=incident.id, number=number, timestamp=ctx.at)
        return incident

    @event("Declared")
    def _declared(self, *, incident_id: UUID, number: int, timestamp: datetime) -> None:
        self.incidents.append(incident_id)


def counts(complaint: Complaint) -> bool:
    """Whether a complaint counts towards a major incident: toward its threshold, and to keep
    it open. A refused complaint does not (it may still be linked to one)."""
    return complaint.status != Status.REFUSED


class MajorIncident(Aggregate):
    """Many complaints of one category from one area within the policy's window: a risk of
    mass complaint (群体性投诉), declared once and followed while complaints keep coming.

    It is declared when `threshold` complaints that count were accepted within the `window`
    before now, and stays open until one window after the last of them: complaints of its
    category and area accepted meanwhile join it. Every member complaint records the link and
    goes one level up where it can; each member entry says what was done (see
    `Complaint.join_incident`).
    """

    id: UUID

    @staticmethod
    def id_for(category: str, area: str, number: int) -> UUID:
        return uuid5(NAMESPACE, f"incident:{category}:{area}:{number}")

    @event("Declared")
    def __init__(
        self,
        *,
        category: str,
        area: str,
        timestamp: datetime,
        number: int = 0,
        window_minutes: int = 60,
        threshold: int = 0,
        members: list[dict[str, str]] | None = None,
        window_start: datetime | None = None,
        complaint_ids: list[str] | None = None,
        escalated: str | None = None,
    ) -> None:
        self.category = category
        self.area = area
        self.number = number
        self.window_minutes = window_minutes
        self.threshold = threshold
        self.declared_at = timestamp
        #: Each complaint: `complaint_id`, `accepted_at`, `done` (escalated: `from_level`,
        #: `to_level`; linked: `why`), in the order they joined.
        self.members: list[dict[str, str]] = []
        if members is None:  # declared before incidents listed their members (wave 1)
            members = _legacy_members(complaint_ids or [], escalated, window_start or timestamp)
            self.threshold = len(members)
        self._add(members)

    @classmethod
    def declare(
        cls,
        category: str,
        area: str,
        number: int,
        complaints: Sequence[Complaint],
        policy: Policy,
        ctx: CommandContext,
    ) -> MajorIncident | None:
        """The incident, if at least the threshold of complaints that count were accepted
        within the window before now (None otherwise); every complaint accepted within it
        joins."""
        config = policy.document.major_incident
        window = timedelta(minutes=config.window_minutes)
        within = sorted(
            (c for c in complaints if ctx.at - window < c.accepted_at <= ctx.at),
            key=lambda c: (c.accepted_at, str(c.id)),
        )
        if sum(1 for c in within if counts(c)) < config.threshold:
            return None
        incident_id = cls.id_for(category, area, number)
        return cls(  # type: ignore[call-arg]
            id=incident_id,
            category=category,
            area=area,
            number=number,
            window_minutes=config.window_minutes,
            threshold=config.threshold,
            members=cls._joined(incident_id, within, len(within), policy, ctx),
            timestamp=ctx.at,
            window_start=None,
            complaint_ids=None,
            escalated=None,
        )

    def join(self, complaints: Sequence[Complaint], policy: Policy, ctx: CommandContext) -> bool:
        """Let in the complaints accepted while the incident was open, in the order they were
        accepted (each that counts keeps it open a window longer); True if any joined."""
        closes_at = self.closes_at
        joining = []
        for complaint in sorted(complaints, key=lambda c: (c.accepted_at, str(c.id))):
            accepted = complaint.accepted_at
            if complaint.incident_id is None and self.opened_from < accepted <= closes_at:
                joining.append(complaint)
                if counts(complaint):
                    closes_at = max(closes_at, accepted + self.window)
        if not joining:
            return False
        size = len(self.members) + len(joining)
        self._members_joined(
            members=self._joined(self.id, joining, size, policy, ctx), timestamp=ctx.at
        )
        return True

    @event("MembersJoined")
    def _members_joined(self, *, members: list[dict[str, str]], timestamp: datetime) -> None:
        self._add(members)

    @staticmethod
    def _joined(
        incident_id: UUID,
        complaints: Sequence[Complaint],
        size: int,
        policy: Policy,
        ctx: CommandContext,
    ) -> list[dict[str, str]]:
        """Each complaint joins (linked, and escalated where it can be): its member entry."""
        members = []
        for complaint in complaints:
            done = complaint.join_incident(str(incident_id), size, policy, ctx)
            assert done is not None, "a complaint in no incident yet always joins"
            members.append(
                {
                    "complaint_id": str(complaint.id),
                    "accepted_at": complaint.accepted_at.isoformat(),
                    **done,
                }
            )
        return members

    def _add(self, members: list[dict[str, str]]) -> None:
        self.members.extend(members)
        self.first_member_at = min(_accepted_at(m) for m in self.members)
        #: The last member that counted when it joined (see `counts`): the incident stays
        #: open one window after it. A declaration holds `threshold` of them.
        self.last_member_at = max(
            _accepted_at(m) for m in self.members if m.get("why") != NotEscalated.REFUSED
        )

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)

    @property
    def opened_from(self) -> datetime:
        """The start of the window the declaration counted: nothing earlier joins."""
        return self.declared_at - self.window

    @property
    def closes_at(self) -> datetime:
        return self.last_member_at + self.window

    def is_open(self, now: datetime) -> bool:
        return now <= self.closes_at

    @property
    def member_ids(self) -> list[UUID]:
        return [UUID(m["complaint_id"]) for m in self.members]


def _legacy_members(
    complaint_ids: list[str], escalated: str | None, window_start: datetime
) -> list[dict[str, str]]:
    """An incident declared by the first version, which recorded its complaints, the one it
    escalated and the start of its (fixed) window, but not when each was accepted."""
    return [
        {
            "complaint_id": complaint_id,
            "accepted_at": window_start.isoformat(),
            **(
                {"done": IncidentAction.ESCALATED.value}
                if complaint_id == escalated
                else {"done": IncidentAction.LINKED.value, "why": NotEscalated.STATUS.value}
            ),
        }
        for complaint_id in complaint_ids
    ]


def _accepted_at(member: dict[str, str]) -> datetime:
    return datetime.fromisoformat(member["accepted_at"])


for _aggregate in (AcceptanceNumber, ComplaintThread, IncidentSeries, MajorIncident):
    install_upcasts(_aggregate)
