"""The Complaint aggregate: one command method per lifecycle step of domain.md.

Public methods are the commands: they check that the step is legal in the current status and
raise a domain error if not, then trigger one past-tense event. The private `@event` methods
only apply an event's facts to the state; they run again on every replay, so they never check
rules and never read a clock.

No rule reads the customer's personal data (`shared.domain.personal`): a complaint read from
the store holds it sealed, opened only by what shows it (a view, a message to the customer).
State may carry it along (a handover copies the last callback), never look into it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.domain import Snapshot as LibrarySnapshot

from shared.domain import deadlines as book
from shared.domain import notices
from shared.domain.codes import (
    Complexity,
    EscalationTrigger,
    IncidentAction,
    Level,
    NotEscalated,
    RefusalReason,
    ReviewOutcome,
    Satisfaction,
    Status,
)
from shared.domain.context import CommandContext
from shared.domain.errors import InvalidCommand, InvalidTransition, NotOwner, NotPermitted
from shared.domain.lifecycle import (
    CONCLUDED,
    OVERSEERS,
    OWNER_ONLY,
    REOPENING,
    Command,
    Opening,
    allows,
)
from shared.domain.policy import Calendar, Policy, Span, Unit, facts_of_intake
from shared.domain.upcasts import install as install_upcasts

#: How far ahead of our clock a frontend's clock may be before its times count as future.
CLOCK_SKEW = timedelta(minutes=5)

_iso = book.iso


class Complaint(Aggregate):
    """A customer complaint, rebuilt from its events."""

    #: The version of the state this class builds from the events (the library's
    #: `class_version`; every snapshot records it). Raise it by one whenever replaying the same
    #: events would now give another state: a field added that earlier events fill in, a value
    #: kept another way, an event applied differently. Snapshots of another version are then
    #: ignored, each complaint replayed from its events and snapshotted anew at its next
    #: command (`shared.store.snapshots`); they are never upcast, so write no `upcast_vN_vM`
    #: here. Not needed when a class default below is right for every older snapshot (no
    #: snapshot older than `handlers` had a handler to keep). Old event shapes: see
    #: `shared.domain.upcasts`.
    #: 2: an Escalated step of the timeline keeps its trigger (the reports count by it).
    class_version = 2

    class Snapshot(LibrarySnapshot):
        """A snapshot that records the state version from the first (the library's records it
        only from 2), so the version of every stored snapshot can be read off its row."""

        @classmethod
        def take(cls, aggregate: Any) -> Complaint.Snapshot:
            snapshot: Complaint.Snapshot = super().take(aggregate)
            snapshot.state.setdefault("class_version", type(aggregate).class_version)
            return snapshot

    id: UUID  # given by the application (derived from the Idempotency-Key when there is one)
    #: When the customer's personal data was erased (see shared.domain.personal).
    personal_data_erased_at: datetime | None = None
    #: The owner is a level's supervisors as a group: nobody there has been named yet.
    owner_is_group: bool = False
    #: The people named to handle it at an escalated level, in order. (State added after
    #: the first version: class defaults, so that its snapshots still load without a new
    #: `class_version`; never mutated, always replaced.)
    handlers: tuple[dict[str, Any], ...] = ()
    #: Limits counted again when the official holiday schedule replaced an estimate.
    recalculations: tuple[dict[str, Any], ...] = ()
    #: The major incident it belongs to (群体性投诉), if any: one at most.
    incident_id: str | None = None

    # ------------------------------------------------------------------ acceptance (投诉受理)
    @event("Accepted")
    def __init__(
        self,
        *,
        acceptance_no: str,
        intake: dict[str, Any],
        deadlines: list[dict[str, Any]],
        repeat_of: str | None,
        time_barred: bool,
        ctx: dict[str, Any],
        timestamp: datetime,
        acknowledge: bool = False,
    ) -> None:
        self.acceptance_no = acceptance_no
        self.intake = intake
        self.repeat_of = repeat_of
        self.time_barred = time_barred
        self.status: str = Status.ACCEPTED.value
        self.level: str = Level.CITY.value
        self.first_contact_owner = ctx["actor"]["id"]
        self.owner = self.first_contact_owner
        self.accepted_at = timestamp
        self.deadlines: dict[str, dict[str, Any]] = {}
        self.refusal: dict[str, Any] | None = None
        self.assignment: dict[str, Any] | None = None
        self.evidence: list[dict[str, Any]] = list(intake.get("evidence") or [])
        self.extensions: list[dict[str, Any]] = []
        self.findings: dict[str, Any] | None = None
        self.resolution: dict[str, Any] | None = None
        self.reply_sent: dict[str, Any] | None = None
        self.escalations: list[dict[str, Any]] = []
        self.reviews: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.archive_summary: str | None = None
        self.paused_at: datetime | None = None
        self.pauses: list[dict[str, Any]] = []
        #: Callback attempts that did not reach the customer.
        self.callback_attempts: list[dict[str, Any]] = []
        #: Missed limits at headquarters, where there is no higher level to escalate to.
        self.alerts: list[dict[str, Any]] = []
        #: Messages to the customer (progress notices, replies), by id, with their outcome.
        self.notifications: dict[str, dict[str, Any]] = {}
        #: What decides its time limits, in order: how a report re-assesses them under another
        #: policy version (see shared.domain.deadlines).
        self.timeline: list[dict[str, Any]] = []
        self._step(
            "Accepted",
            timestamp,
            deadlines,
            opening=Opening.ACCEPTED.value,
            received_at=intake.get("received_at"),
        )
        if acknowledge:  # (the first version acknowledged nothing: a replay sends nothing)
            self._request_notification(
                "ack-1",
                notices.Kind.ACKNOWLEDGEMENT,
                timestamp,
                version=1,
                by=ctx["actor"],
                dates=self._dates("reply", "repair", "installation"),
            )

    @classmethod
    def accept(
        cls,
        *,
        complaint_id: UUID,
        acceptance_no: str,
        intake: dict[str, Any],
        repeat_of: UUID | None,
        policy: Policy,
        ctx: CommandContext,
    ) -> Complaint:
        """Accept a complaint: the policy's limits start (from when it reached us, for
        channels that are not live), and the limitation check flags it if it came too late."""
        cls.check_intake_times(intake, ctx.at)
        received = intake.get("received_at")
        return cls(  # type: ignore[call-arg]  # `id` is the library's keyword
            id=complaint_id,
            acceptance_no=acceptance_no,
            intake=intake,
            deadlines=policy.deadlines(
                facts_of_intake(intake, level=Level.CITY.value),
                accepted_at=ctx.at,
                received_at=datetime.fromisoformat(received) if received else None,
            ),
            repeat_of=str(repeat_of) if repeat_of else None,
            time_barred=policy.is_time_barred(
                intake["category"], datetime.fromisoformat(intake["occurred_at"]), ctx.at
            ),
            ctx=ctx.record(),
            timestamp=ctx.at,
            acknowledge=True,
        )

    @staticmethod
    def check_intake_times(intake: dict[str, Any], now: datetime) -> None:
        """The times a frontend reports cannot lie in the future."""
        for field in ("occurred_at", "received_at"):
            value = intake.get(field)
            if value and datetime.fromisoformat(value) > now + CLOCK_SKEW:
                raise InvalidCommand(f"{field} lies in the future.")

    # ---------------------------------------------------------------- refusal (不予受理)
    def refuse(
        self,
        reason: RefusalReason,
        explanation: str,
        redirect: str,
        ctx: CommandContext,
        *,
        earlier: Complaint | None = None,
        override: str | None = None,
    ) -> None:
        """Do not accept (不予受理), for a reason that holds: `time_barred` only when the
        limitation check flagged the complaint at intake, unless a supervisor overrides it
        with a reason; `repeat_with_conclusion` only when the complaint repeats an `earlier`
        one the customer was answered on (replied or archived)."""
        self._check(Command.REFUSE, ctx)
        if override is not None and ctx.actor.role not in OVERSEERS:
            raise NotPermitted("Only a supervisor may override the limitation check.")
        if reason == RefusalReason.TIME_BARRED and not self.time_barred and override is None:
            raise InvalidCommand(
                "The complaint is not past the limitation period (fee disputes 5 months, others "
                "2 years after the event): refuse it as time_barred only with a supervisor's "
                "override_reason."
            )
        if reason == RefusalReason.REPEAT_WITH_CONCLUSION and not (
            earlier is not None and earlier.concluded
        ):
            raise InvalidCommand(
                "repeat_with_conclusion needs an earlier complaint of the same customer, service "
                "number and category that was replied or archived; "
                + (
                    f"the earlier one ({earlier.acceptance_no}) is {earlier.status}."
                    if earlier is not None
                    else "this complaint repeats none."
                )
            )
        self._refused(
            reason=reason.value,
            explanation=explanation,
            redirect=redirect,
            override_reason=override,
            tell=True,
            repeats=(
                {"id": str(earlier.id), "status": str(earlier.status)}
                if earlier is not None and reason == RefusalReason.REPEAT_WITH_CONCLUSION
                else None
            ),
            ctx=ctx.record(),
            timestamp=ctx.at,
        )

    @property
    def concluded(self) -> bool:
        """The customer has been given an answer: replied, called back or archived."""
        return self.reply_sent is not None or self.status in CONCLUDED

    @event("Refused")
    def _refused(
        self,
        *,
        reason: str,
        explanation: str,
        redirect: str,
        ctx: dict[str, Any],
        timestamp: datetime,
        override_reason: str | None = None,
        repeats: dict[str, str] | None = None,
        tell: bool = False,
    ) -> None:
        self.refusal = {
            "reason": reason,
            "explanation": explanation,
            "redirect": redirect,
            "override_reason": override_reason,
            "repeats": repeats,
            "at": _iso(timestamp),
            "by": ctx["actor"],
        }
        self.status = Status.REFUSED.value
        self._step("Refused", timestamp)  # a refusal is an answer: no limit runs on after it
        if tell:  # (the first version told the customer nothing: a replay sends nothing)
            self._request_notification("refusal-1", notices.Kind.REFUSAL, timestamp)

    # ---------------------------------------------------------- investigation (调查核实)
    def assign(
        self,
        department: str,
        investigator: str,
        complexity: Complexity,
        policy: Policy,
        ctx: CommandContext,
    ) -> None:
        """Hand the complaint to one named investigator (专人负责). The complexity chooses again
        the limits that depend on it (the investigation, and the reply and resolution that
        follow it), counted from acceptance."""
        self._check(Command.ASSIGN, ctx)
        received = self.intake.get("received_at")
        deadlines = policy.deadlines(
            {**self.facts(), "complexity": complexity.value},
            accepted_at=self.accepted_at,
            received_at=datetime.fromisoformat(received) if received else None,
            only=policy.selecting_on("complexity"),
        )
        self._assigned(
            department=department,
            investigator=investigator,
            complexity=complexity.value,
            deadlines=deadlines,
            ctx=ctx.record(),
            timestamp=ctx.at,
        )

    @event("Assigned")
    def _assigned(
        self,
        *,
        department: str,
        investigator: str,
        complexity: str,
        deadlines: list[dict[str, Any]],
        ctx: dict[str, Any],
        timestamp: datetime,
    ) -> None:
        self.assignment = {
            "department": department,
            "investigator": investigator,
            "complexity": complexity,
            "at": _iso(timestamp),
        }
        self._own(investigator)
        self.status = Status.INVESTIGATING.value
        promised = self._dates("reply")
        for deadline in deadlines:
            book.replace(self.deadlines, deadline, timestamp)
        self._step("Assigned", timestamp, complexity=complexity)
        self._tell_if_later(promised, timestamp, notices.Reason.COMPLEX)

    def facts(self, level: Level | str | None = None) -> dict[str, str | None]:
        """What the time-limit policy selects on (at `level`, by default the current one)."""
        return facts_of_intake(
            self.intake, (self.assignment or {}).get("complexity"), str(level or self.level)
        )

    def _opened(self, policy: Policy, opening: Opening | None, at: datetime, **facts: str) -> Any:
        """The policy's limits that start when the complaint enters `opening` at `at`."""
        if opening is None:
            return []
        return policy.deadlines({**self.facts(), **facts}, accepted_at=at, opening=opening)

    def add_evidence(self, kind: str, ref: str, summary: str, ctx: CommandContext) -> None:
        self._check(Command.ADD_EVIDENCE, ctx)
        self._evidence_added(
            kind=kind, ref=ref, summary=summary, ctx=ctx.record(), timestamp=ctx.at
        )

    @event("EvidenceAdded")
    def _evidence_added(
        self, *, kind: str, ref: str, summary: str, ctx: dict[str, Any], timestamp: datetime
    ) -> None:
        self.evidence.append(
            {
                "kind": kind,
                "ref": ref,
                "summary": summary,
                "at": _iso(timestamp),
                "by": ctx["actor"],
            }
        )

    def extend(
        self,
        reason: str,
        new_due_at: datetime,
        progress_notice: str,
        policy: Policy,
        ctx: CommandContext,
    ) -> None:
        """Extend a complex complaint's investigation, with a reason and a notice to the
        customer (告知进展). The customer is told a new date, so the reply (and the resolution)
        move with it: each limit the policy's extension names is moved to at least
        `new_due_at`. The first due times stay on record."""
        self._check(Command.EXTEND, ctx)
        if not self.assignment or self.assignment["complexity"] != Complexity.COMPLEX:
            raise InvalidTransition(
                "extend", self.status, "Only complaints assessed as complex may be extended."
            )
        extends = policy.document.extension.extends
        key = next(
            (
                k
                for k, d in reversed(self.deadlines.items())
                if d["name"] in extends and book.is_open(d)
            ),
            None,
        )
        if key is None:
            raise InvalidTransition("extend", self.status, "No investigation limit is running.")
        current = self.deadlines[key]
        due = datetime.fromisoformat(current["due_at"])
        if ctx.at > due:
            raise InvalidTransition(
                "extend",
                self.status,
                "The investigation limit has passed: it is escalated, not extended.",
            )
        if new_due_at <= due:
            raise InvalidCommand("new_due_at must be later than the current investigation limit.")
        first = datetime.fromisoformat(current.get("original_due_at") or current["due_at"])
        latest = policy.latest_extension(first)
        if new_due_at > latest:
            raise InvalidCommand(
                f"new_due_at may be {_iso(latest)} at the latest: "
                f"{policy.document.extension.source}."
            )
        self._extended(
            deadline=key,
            reason=reason,
            new_due_at=_iso(new_due_at),
            progress_notice=progress_notice,
            moves=list(policy.document.extension.moves),
            ctx=ctx.record(),
            timestamp=ctx.at,
        )

    @event("Extended")
    def _extended(
        self,
        *,
        deadline: str,
        reason: str,
        new_due_at: str,
        progress_notice: str,
        ctx: dict[str, Any],
        timestamp: datetime,
        moves: list[str] | None = None,
    ) -> None:
        previous = self.deadlines[deadline]["due_at"]
        moved = book.extend(self.deadlines, moves or [deadline], new_due_at, timestamp)
        self._step("Extended", timestamp, new_due_at=new_due_at)
        self.extensions.append(
            {
                "deadline": deadline,
                "reason": reason,
                "previous_due_at": previous,
                "new_due_at": new_due_at,
                "moved": moved,
                "progress_notice": progress_notice,
                "at": _iso(timestamp),
            }
        )
        self._request_notification(
            self._next_id("progress"), notices.Kind.PROGRESS_NOTICE, timestamp
        )

    def record_findings(
        self, conclusion: str, basis: str, root_cause: str, upheld: bool, ctx: CommandContext
    ) -> None:
        self._check(Command.RECORD_FINDINGS, ctx)
        self._findings_recorded(
            conclusion=conclusion,
            basis=basis,
            root_cause=root_cause,
            upheld=upheld,
            ctx=ctx.record(),
            timestamp=ctx.at,
        )

    @event("FindingsRecorded")
    def _findings_recorded(
        self,
        *,
        conclusion: str,
        basis: str,
        root_cause: str,
        upheld: bool,
        ctx: dict[str, Any],
        timestamp: datetime,
    ) -> None:
        self.findings = {
            "conclusion": conclusion,
            "basis": basis,
            "root_cause": root_cause,
            "upheld": upheld,
            "at": _iso(timestamp),
            "by": ctx["actor"],
        }
        self._step("FindingsRecorded", timestamp)

    # ------------------------------------------------------- handling and reply (处理与答复)
    def propose_resolution(
        self,
        measures: list[str],
        remedies: list[dict[str, str | None]],
        owner: str,
        due_at: datetime,
        ctx: CommandContext,
    ) -> None:
        self._check(Command.PROPOSE_RESOLUTION, ctx)
        if self.findings is None:
            raise InvalidTransition("propose_resolution", self.status, "Record the findings first.")
        if due_at <= ctx.at:
            raise InvalidCommand("due_at of the resolution must lie in the future.")
        self._resolution_proposed(
            measures=measures,
            remedies=remedies,
            owner=owner,
            due_at=_iso(due_at),
            ctx=ctx.record(),
            timestamp=ctx.at,
        )

    @event("ResolutionProposed")
    def _resolution_proposed(
        self,
        *,
        measures: list[str],
        remedies: list[dict[str, str | None]],
        owner: str,
        due_at: str,
        ctx: dict[str, Any],
        timestamp: datetime,
    ) -> None:
        self.resolution = {
            "measures": measures,
            "remedies": remedies,
            "owner": owner,
            "due_at": due_at,
            "at": _iso(timestamp),
        }
        self.status = Status.RESOLUTION_PROPOSED.value
        self._step("ResolutionProposed", timestamp)

    def reply(
        self,
        channel: str,
        conclusion: str,
        basis: str,
        plan: str,
        execution: str,
        policy: Policy,
        ctx: CommandContext,
    ) -> None:
        """Answer the customer; the callback (回访) is then due."""
        self._check(Command.REPLY, ctx)
        if self.findings is None:
            raise InvalidTransition("reply", self.status, "Record the findings first.")
        if self.findings["upheld"] and self.resolution is None:
            raise InvalidTransition(
                "reply", self.status, "An upheld complaint needs a resolution plan first."
            )
        if channel != self.intake["reply_channel"]:
            raise InvalidCommand(
                f"The customer asked for replies by {self.intake['reply_channel']}, not {channel}."
            )
        self._replied(
            channel=channel,
            conclusion=conclusion,
            basis=basis,
            plan=plan,
            execution=execution,
            deadlines=self._opened(policy, Opening.REPLIED, ctx.at),
            ctx=ctx.record(),
            timestamp=ctx.at,
        )

    @event("Replied")
    def _replied(
        self,
        *,
        channel: str,
        conclusion: str,
        basis: str,
        plan: str,
        execution: str,
        ctx: dict[str, Any],
        timestamp: datetime,
        deadlines: list[dict[str, Any]] | None = None,
    ) -> None:
        self.reply_sent = {
            "channel": channel,
            "conclusion": conclusion,
            "basis": basis,
            "plan": plan,
            "execution": execution,
            "at": _iso(timestamp),
            "by": ctx["actor"],
        }
        self.status = Status.REPLIED.value
        self._step("Replied", timestamp, deadlines or [], opening=Opening.REPLIED.value)
        self._request_notification(self._next_id("reply"), notices.Kind.REPLY, timestamp)

    # ------------------------------------------------------------- escalation (投诉升级)
    def escalate(
        self,
        trigger: EscalationTrigger,
        reason: str,
        to_level: Level,
        policy: Policy,
        ctx: CommandContext,
        *,
        regulator_ref: str | None = None,
        regulator_due_at: datetime | None = None,
    ) -> None:
        """Hand the complaint to a higher level: its supervisors hold it as a group until they
        name a handler, and the level's own limits start."""
        self._check(Command.ESCALATE, ctx)
        if self.status == Status.REFUSED and trigger != EscalationTrigger.REGULATOR_APPEAL:
            raise InvalidTransition(
                "escalate", self.status, "Only a regulator appeal reopens a refused complaint."
            )
        current = Level(self.level)
        # At the top a complaint goes up "again" only when it comes back from handling there,
        # or with a regulator's new appeal (its reference and deadline): never to start the
        # level's limits again while it is being reviewed.
        stays_at_top = to_level == current == Level.HEADQUARTERS and (
            self.status != Status.ESCALATED or regulator_ref is not None
        )
        if regulator_ref is not None and any(
            e.get("regulator_ref") == regulator_ref for e in self.escalations
        ):
            raise InvalidCommand(f"The regulator's appeal {regulator_ref} is on record already.")
        if to_level.rank <= current.rank and not stays_at_top:
            raise InvalidTransition(
                "escalate",
                self.status,
                f"The complaint is already at level '{self.level}'; escalate to a higher level.",
            )
        deadlines = []
        if regulator_due_at is not None:
            if regulator_due_at <= ctx.at:
                raise InvalidCommand("due_at of the appeal must lie in the future.")
            deadlines.append(
                {
                    "name": "regulator_appeal",
                    "opened_by": Opening.ESCALATED.value,
                    "bound_to": None,  # a promise to the regulator, whatever happens meanwhile
                    "level": to_level.value,
                    "starts_at": _iso(ctx.at),
                    "due_at": _iso(regulator_due_at),
                    "amount": None,
                    "unit": "regulator",
                    # Only an answer to the regulator meets it: a reply recorded at
                    # headquarters, where the appeal is handled. A review is internal.
                    "met_by": ["Replied"],
                    "target": 1.0,
                    "pausable": False,
                    "source": f"regulator appeal {regulator_ref}",
                    "policy_version": None,
                }
            )
        self._escalated(
            trigger=trigger.value,
            reason=reason,
            from_level=str(self.level),
            to_level=to_level.value,
            regulator_ref=regulator_ref,
            deadlines=deadlines
            + self._opened(policy, Opening.ESCALATED, ctx.at, level=to_level.value),
            handover=self.handover_package(),
            ctx=ctx.record(),
            timestamp=ctx.at,
            missed_deadline=None,
        )

    @event("Escalated")
    def _escalated(
        self,
        *,
        trigger: str,
        reason: str,
        from_level: str,
        to_level: str,
        regulator_ref: str | None,
        deadlines: list[dict[str, Any]],
        handover: dict[str, Any],
        ctx: dict[str, Any],
        timestamp: datetime,
        missed_deadline: str | None = None,
    ) -> None:
        if trigger == EscalationTrigger.DEADLINE_MISSED:
            # One lapse, one escalation: every limit passed by now goes up with it, so that
            # the watch does not take the complaint up again for another that passed too.
            missed = set(book.passed(self.deadlines, timestamp, paused=self.paused_at is not None))
            if missed_deadline is not None:
                missed.add(missed_deadline)
            for key in sorted(missed):
                book.mark_escalated(self.deadlines, key, timestamp)
        self.escalations.append(
            {
                "trigger": trigger,
                "reason": reason,
                "from_level": from_level,
                "to_level": to_level,
                "regulator_ref": regulator_ref,
                "status_before": str(self.status),
                "at": _iso(timestamp),
                "by": ctx["actor"],
            }
        )
        self.level = to_level
        self.owner = f"{to_level}-supervisors"
        self.owner_is_group = True
        self.status = Status.ESCALATED.value
        self._step(
            "Escalated",
            timestamp,
            deadlines,
            opening=Opening.ESCALATED.value,
            trigger=trigger,  # what set it off, for the reports
            # Limits that do not come from the policy (a regulator's), for re-analysis.
            deadlines=[d for d in deadlines if d.get("policy_version") is None],
        )

    def escalate_missed(self, deadline: str, policy: Policy, ctx: CommandContext) -> None:
        """A running limit has passed: escalate one level up, or at headquarters alert the
        supervisors there, and the limit runs again. Each missed deadline does this once."""
        self._check(Command.ESCALATE_MISSED, ctx)
        current = self.deadlines.get(deadline)
        if current is None:
            raise InvalidCommand(f"The complaint has no {deadline!r} limit.")
        if not book.is_pending(current):
            raise InvalidTransition(
                "escalate_missed", self.status, f"The {deadline} limit is met or escalated."
            )
        if datetime.fromisoformat(current["due_at"]) >= ctx.at:
            raise InvalidTransition("escalate_missed", self.status, f"{deadline} is not due.")
        if current["pausable"] and self.paused_at is not None:
            raise InvalidTransition(
                "escalate_missed", self.status, f"The clock of {deadline} is paused."
            )
        level = Level(self.level)
        reason = f"The {deadline} limit passed at {current['due_at']} without being met."
        if level == Level.HEADQUARTERS:
            self._supervisors_alerted(
                deadline=deadline,
                reason=reason,
                follow_up=policy.alert_follow_up(current, ctx.at),
                ctx=ctx.record(),
                timestamp=ctx.at,
            )
            return
        to_level = list(Level)[level.rank + 1].value
        self._escalated(
            trigger=EscalationTrigger.DEADLINE_MISSED.value,
            reason=reason,
            from_level=level.value,
            to_level=to_level,
            regulator_ref=None,
            deadlines=self._opened(policy, Opening.ESCALATED, ctx.at, level=to_level),
            handover=self.handover_package(),
            ctx=ctx.record(),
            timestamp=ctx.at,
            missed_deadline=deadline,
        )

    @event("SupervisorsAlerted")
    def _supervisors_alerted(
        self,
        *,
        deadline: str,
        reason: str,
        ctx: dict[str, Any],
        timestamp: datetime,
        follow_up: dict[str, Any] | None = None,
    ) -> None:
        """At the top there is no higher level: the headquarters supervisors are alerted, and
        the limit runs again so that nothing waits unwatched."""
        book.mark_escalated(self.deadlines, deadline, timestamp)
        self.alerts.append({"deadline": deadline, "reason": reason, "at": _iso(timestamp)})
        self._step(
            "SupervisorsAlerted", timestamp, [follow_up] if follow_up else [], deadline=deadline
        )

    # ------------------------------------------------- major incidents (群体性投诉)
    def join_incident(
        self, incident_id: str, size: int, policy: Policy, ctx: CommandContext
    ) -> dict[str, str] | None:
        """Become one of a major incident's complaints. The link is recorded in every status;
        then the complaint goes one level up (trigger major_incident) if it can. Returns what
        was done: escalated from one level to the next, or linked and why it did not go up.
        Joining the incident it belongs to already records nothing (None)."""
        self._check(Command.JOIN_INCIDENT, ctx)
        if self.incident_id == incident_id:
            return None
        if self.incident_id is not None:
            raise InvalidCommand(f"The complaint belongs to major incident {self.incident_id}.")
        held_back = self._not_escalated_because()
        self._incident_linked(incident_id=incident_id, ctx=ctx.record(), timestamp=ctx.at)
        if held_back is not None:
            return {"done": IncidentAction.LINKED.value, "why": held_back.value}
        level = Level(self.level)
        to_level = list(Level)[level.rank + 1]
        self.escalate(
            EscalationTrigger.MAJOR_INCIDENT,
            f"Major incident {incident_id} (群体性投诉): {size} {self.intake['category']} "
            f"complaints from {self.intake.get('area')}.",
            to_level,
            policy,
            ctx,
        )
        return {
            "done": IncidentAction.ESCALATED.value,
            "from_level": level.value,
            "to_level": to_level.value,
        }

    def _not_escalated_because(self) -> NotEscalated | None:
        """Why a major incident cannot take the complaint up a level; None if it can."""
        if self.status == Status.REFUSED:  # only a regulator appeal reopens a refusal
            return NotEscalated.REFUSED
        if not allows(self.status, Command.ESCALATE):
            return NotEscalated.ARCHIVED if self.status == Status.ARCHIVED else NotEscalated.STATUS
        if Level(self.level) is Level.HEADQUARTERS:
            return NotEscalated.AT_HEADQUARTERS
        return None

    @event("IncidentLinked")
    def _incident_linked(
        self, *, incident_id: str, ctx: dict[str, Any], timestamp: datetime
    ) -> None:
        self.incident_id = incident_id

    # ----------------------------------------------------- the official holiday schedule
    def recalculate_deadlines(self, policy: Policy, ctx: CommandContext) -> None:
        """Count again, on `policy`'s calendar, the running limits that another policy version
        counted in working days over a year whose holiday schedule it only estimated, now
        that `policy` brings that year's official schedule. Only the calendar changes: each
        limit keeps its own length, start and paused time. Recorded with the old and new due
        times and both policy versions, never silently. A date an extension promised stays."""
        self._check(Command.RECALCULATE_DEADLINES, ctx)
        changes = []
        for key, deadline in self.deadlines.items():
            previous = deadline.get("policy_version")
            due = datetime.fromisoformat(deadline["due_at"])
            if (
                deadline.get("calendar") != Calendar.ESTIMATED
                or previous in (None, policy.version)
                or not book.is_pending(deadline)
                or deadline.get("original_due_at")
                or deadline["unit"] != Unit.WORKING_DAYS
                or due < ctx.at
            ):
                continue
            starts = datetime.fromisoformat(deadline["starts_at"])
            counted = policy.due_at(Span(amount=deadline["amount"], unit=Unit.WORKING_DAYS), starts)
            if policy.calendar.counted(starts, counted) is Calendar.ESTIMATED:
                continue  # this policy does not know that year officially either
            paused = timedelta(seconds=deadline.get("paused_seconds", 0))
            changes.append(
                {
                    "key": key,
                    "previous_due_at": deadline["due_at"],
                    "due_at": _iso(counted + paused),
                    "previous_policy_version": previous,
                    "policy_version": policy.version,
                }
            )
        if not changes:
            raise InvalidCommand(
                f"No running limit was counted on an estimated calendar that policy "
                f"{policy.version} makes official."
            )
        self._deadlines_recalculated(changes=changes, ctx=ctx.record(), timestamp=ctx.at)

    @event("DeadlinesRecalculated")
    def _deadlines_recalculated(
        self, *, changes: list[dict[str, str]], ctx: dict[str, Any], timestamp: datetime
    ) -> None:
        promised = self._dates("reply")
        for change in changes:
            self.deadlines[change["key"]] = {
                **self.deadlines[change["key"]],
                "due_at": change["due_at"],
                "policy_version": change["policy_version"],
                "calendar": Calendar.OFFICIAL.value,
                "recalculated_from": change["previous_due_at"],
            }
        self.recalculations = (*self.recalculations, {"changes": changes, "at": _iso(timestamp)})
        self._tell_if_later(promised, timestamp, notices.Reason.CALENDAR)

    # ------------------------------------------------------- the level's named handler
    def assign_handler(self, handler: str, ctx: CommandContext) -> None:
        """Name the person who handles the complaint at its level (专人负责): until then the
        level's supervisors hold it as a group, and that wait is itself a limit."""
        self._check(Command.ASSIGN_HANDLER, ctx)
        if not self.owner_is_group and self.owner == handler:
            raise InvalidCommand(f"{handler} already handles this complaint.")
        self._handler_assigned(
            handler=handler, level=str(self.level), ctx=ctx.record(), timestamp=ctx.at
        )

    @event("HandlerAssigned")
    def _handler_assigned(
        self, *, handler: str, level: str, ctx: dict[str, Any], timestamp: datetime
    ) -> None:
        self._own(handler)
        self.handlers = (
            *self.handlers,
            {"handler": handler, "level": level, "at": _iso(timestamp), "by": ctx["actor"]},
        )
        self._step("HandlerAssigned", timestamp)

    def handover_package(self) -> dict[str, Any]:
        """What the lower level hands over: everything recorded so far."""
        return {
            "status": str(self.status),
            "level": str(self.level),
            "owner": self.owner,
            "evidence_count": len(self.evidence),
            "findings": self.findings,
            "resolution": self.resolution,
            "reply": self.reply_sent,
            "last_callback": self.callbacks[-1] if self.callbacks else None,
            "escalations": len(self.escalations),
        }

    def review(
        self, outcome: ReviewOutcome, notes: str, policy: Policy, ctx: CommandContext
    ) -> None:
        """The level decides. Revised: handling starts again at this level. Upheld: back to
        where the complaint was before escalating. An appeal is answered to the regulator by
        a reply from here, so after its review the complaint goes back to handling either
        way (upheld keeps the findings and the plan). Each way back starts the limit of what
        must happen next."""
        self._check(Command.REVIEW, ctx)
        status = self._status_after_review(outcome)
        opened = self._opened(policy, REOPENING.get(status), ctx.at)
        findings_kept = outcome == ReviewOutcome.UPHELD and self.findings is not None
        self._reviewed(
            outcome=outcome.value,
            notes=notes,
            status=status.value,
            deadlines=book.without_investigation(opened) if findings_kept else opened,
            findings_kept=findings_kept,
            ctx=ctx.record(),
            timestamp=ctx.at,
        )

    def _status_after_review(self, outcome: ReviewOutcome) -> Status:
        if outcome == ReviewOutcome.REVISED:
            return Status.INVESTIGATING
        before = Status(self._status_before_escalation())
        appealed = any(
            d["name"] == "regulator_appeal" and book.is_open(d) for d in self.deadlines.values()
        )
        if appealed and before not in (Status.INVESTIGATING, Status.RESOLUTION_PROPOSED):
            has_plan = self.findings is not None and self.resolution is not None
            return Status.RESOLUTION_PROPOSED if has_plan else Status.INVESTIGATING
        return before

    @event("Reviewed")
    def _reviewed(
        self,
        *,
        outcome: str,
        notes: str,
        ctx: dict[str, Any],
        timestamp: datetime,
        status: str | None = None,
        deadlines: list[dict[str, Any]] | None = None,
        findings_kept: bool = False,
    ) -> None:
        self.reviews.append(
            {
                "outcome": outcome,
                "notes": notes,
                "level": str(self.level),
                "at": _iso(timestamp),
                "by": ctx["actor"],
            }
        )
        if self.owner_is_group:  # the reviewer is the level's named person now
            self._own(ctx["actor"]["id"])
        if outcome == ReviewOutcome.REVISED:
            # Handling starts again at this level; the earlier results stay in the history.
            self.findings = None
            self.resolution = None
            self.reply_sent = None
        self.status = status or (
            Status.INVESTIGATING.value
            if outcome == ReviewOutcome.REVISED
            else self._status_before_escalation()
        )
        opening = REOPENING.get(Status(self.status))
        self._step(
            "Reviewed",
            timestamp,
            deadlines or [],
            opening=opening.value if opening else None,
            findings_kept=findings_kept or None,
        )

    def _status_before_escalation(self) -> str:
        for escalation in reversed(self.escalations):
            if escalation["status_before"] != Status.ESCALATED:
                return str(escalation["status_before"])
        return Status.INVESTIGATING.value

    # ------------------------------------------------------------- time-limit pauses
    def pause_clock(self, reason: str, ctx: CommandContext) -> None:
        """Stop the pausable limits (e.g. waiting for the customer); every pause is an event."""
        self._check(Command.PAUSE_CLOCK, ctx)
        if self.paused_at is not None:
            raise InvalidTransition("pause_clock", self.status, "The clock is already paused.")
        self._clock_paused(reason=reason, ctx=ctx.record(), timestamp=ctx.at)

    @event("ClockPaused")
    def _clock_paused(self, *, reason: str, ctx: dict[str, Any], timestamp: datetime) -> None:
        self.paused_at = timestamp
        self.pauses.append({"reason": reason, "from": _iso(timestamp), "to": None})

    def resume_clock(self, ctx: CommandContext) -> None:
        self._check(Command.RESUME_CLOCK, ctx)
        if self.paused_at is None:
            raise InvalidTransition("resume_clock", self.status, "The clock is not paused.")
        self._clock_resumed(ctx=ctx.record(), timestamp=ctx.at)

    @event("ClockResumed")
    def _clock_resumed(self, *, ctx: dict[str, Any], timestamp: datetime) -> None:
        assert self.paused_at is not None
        paused_for = timestamp - self.paused_at
        book.shift_paused(self.deadlines, self.paused_at, timestamp)
        self._step("ClockResumed", timestamp, seconds=paused_for.total_seconds())
        self.pauses[-1]["to"] = _iso(timestamp)
        self.paused_at = None

    # ------------------------------------------------------------------ callback (回访)
    def record_unreached_callback(self, comments: str, ctx: CommandContext) -> None:
        """A callback attempt that did not reach the customer: recorded, nothing closes."""
        self._check(Command.RECORD_UNREACHED_CALLBACK, ctx)
        self._callback_unreached(comments=comments, ctx=ctx.record(), timestamp=ctx.at)

    @event("CallbackUnreached")
    def _callback_unreached(
        self, *, comments: str, ctx: dict[str, Any], timestamp: datetime
    ) -> None:
        self.callback_attempts.append(
            {"comments": comments, "at": _iso(timestamp), "by": ctx["actor"]}
        )

    def record_callback(
        self,
        satisfaction: Satisfaction,
        resolved: bool,
        comments: str,
        policy: Policy,
        ctx: CommandContext,
    ) -> None:
        """Record the callback. A content customer with the problem solved: the archive is
        due. Dissatisfied or unresolved: escalated at once, in the same save."""
        self._check(Command.RECORD_CALLBACK, ctx)
        content = satisfaction != Satisfaction.DISSATISFIED and resolved
        self._callback_recorded(
            satisfaction=satisfaction.value,
            resolved=resolved,
            comments=comments,
            deadlines=self._opened(policy, Opening.CALLBACK_DONE if content else None, ctx.at),
            ctx=ctx.record(),
            timestamp=ctx.at,
        )
        if not content:
            next_level = list(Level)[min(Level(self.level).rank + 1, len(Level) - 1)]
            self.escalate(
                EscalationTrigger.CUSTOMER_DISSATISFIED,
                "Callback: the customer is dissatisfied or the problem is unresolved.",
                next_level,
                policy,
                ctx,
            )

    @event("CallbackRecorded")
    def _callback_recorded(
        self,
        *,
        satisfaction: str,
        resolved: bool,
        comments: str,
        ctx: dict[str, Any],
        timestamp: datetime,
        deadlines: list[dict[str, Any]] | None = None,
    ) -> None:
        self.callbacks.append(
            {
                "satisfaction": satisfaction,
                "resolved": resolved,
                "comments": comments,
                "at": _iso(timestamp),
                "by": ctx["actor"],
            }
        )
        self.status = Status.CALLBACK_DONE.value
        content = satisfaction != Satisfaction.DISSATISFIED and resolved
        self._step(
            "CallbackRecorded",
            timestamp,
            deadlines or [],
            opening=Opening.CALLBACK_DONE.value if content else None,
        )

    # ------------------------------------------------------------------- archive (归档)
    def archive(self, summary: str, ctx: CommandContext) -> None:
        self._check(Command.ARCHIVE, ctx)
        self._archived(summary=summary, ctx=ctx.record(), timestamp=ctx.at)

    @event("Archived")
    def _archived(self, *, summary: str, ctx: dict[str, Any], timestamp: datetime) -> None:
        self.archive_summary = summary
        self.status = Status.ARCHIVED.value
        self._step("Archived", timestamp)  # nothing runs on in the archive

    # ------------------------------------------------------- messages to the customer
    def record_notification(
        self,
        notification_id: str,
        *,
        sent: bool,
        detail: str,
        ctx: CommandContext,
        final: bool = False,
    ) -> None:
        """Record what the gateway answered for a message: sent, or failed — retried later, or
        for good (`final`) when the gateway refused the message itself."""
        self._check(Command.RECORD_NOTIFICATION, ctx)
        notification = self.notifications.get(notification_id)
        if notification is None:
            raise InvalidCommand(f"No message {notification_id!r} was requested.")
        if notification.get("task"):
            raise InvalidCommand(f"Message {notification_id} is a task for staff to confirm.")
        if notification["status"] != "pending":
            raise InvalidTransition(
                "record_notification",
                self.status,
                f"Message {notification_id} is {notification['status']} already.",
            )
        if sent:
            self._notification_sent(
                notification_id=notification_id,
                gateway_ref=detail,
                ctx=ctx.record(),
                timestamp=ctx.at,
            )
        else:
            self._notification_failed(
                notification_id=notification_id,
                error=detail,
                final=final,
                ctx=ctx.record(),
                timestamp=ctx.at,
            )

    @event("NotificationSent")
    def _notification_sent(
        self, *, notification_id: str, gateway_ref: str, ctx: dict[str, Any], timestamp: datetime
    ) -> None:
        self.notifications[notification_id] = {
            **self.notifications[notification_id],
            "status": "sent",
            "sent_at": _iso(timestamp),
            "gateway_ref": gateway_ref,
        }

    @event("NotificationFailed")
    def _notification_failed(
        self,
        *,
        notification_id: str,
        error: str,
        final: bool,
        ctx: dict[str, Any],
        timestamp: datetime,
    ) -> None:
        notification = self.notifications[notification_id]
        self.notifications[notification_id] = {
            **notification,
            "status": "failed" if final else "pending",
            "attempts": notification["attempts"] + 1,
            "last_error": error,
            "last_failed_at": _iso(timestamp),
        }

    def confirm_notification(self, notification_id: str, note: str, ctx: CommandContext) -> None:
        """Staff record a task done: the letter posted, the call made, the visit paid."""
        self._check(Command.CONFIRM_NOTIFICATION, ctx)
        notification = self.notifications.get(notification_id)
        if notification is None:
            raise InvalidCommand(f"No message {notification_id!r} was requested.")
        if not notification.get("task"):
            raise InvalidCommand(
                f"Message {notification_id} goes through the gateway by {notification['channel']}"
                ", not through staff."
            )
        if notification["status"] != "pending":
            raise InvalidTransition(
                "confirm_notification",
                self.status,
                f"Message {notification_id} is {notification['status']} already.",
            )
        self._notification_confirmed(
            notification_id=notification_id, note=note, ctx=ctx.record(), timestamp=ctx.at
        )

    @event("NotificationConfirmed")
    def _notification_confirmed(
        self, *, notification_id: str, note: str, ctx: dict[str, Any], timestamp: datetime
    ) -> None:
        self.notifications[notification_id] = {
            **self.notifications[notification_id],
            "status": "sent",
            "sent_at": _iso(timestamp),
            "confirmed_by": ctx["actor"],
            "note": note,
        }

    def _request_notification(
        self,
        notification_id: str,
        kind: notices.Kind,
        at: datetime,
        *,
        version: int | None = None,
        by: dict[str, Any] | None = None,
        dates: dict[str, str] | None = None,
        why: notices.Reason | None = None,
    ) -> None:
        """Ask for a message to the customer through the channel they chose: the gateway's
        (SMS, e-mail), staff's (letter, phone, visit), or given there and then at a hotline
        or a counter (an acknowledgement only; `by` is the agent who gave it)."""
        channel = self.intake["reply_channel"]
        live = notices.told_live(kind, self.intake["channel"], channel)
        self.notifications[notification_id] = {
            "id": notification_id,
            "kind": kind.value,
            "channel": self.intake["channel"] if live else channel,
            "task": not live and notices.is_task(channel),
            "requested_version": version or self.version + 1,
            "requested_at": _iso(at),
            "status": "sent" if live else "pending",
            "attempts": 0,
            "last_error": None,
            "last_failed_at": None,
            "sent_at": _iso(at) if live else None,
            "gateway_ref": None,
            "confirmed_by": by if live else None,
            "dates": dates or {},
            **({"why": why.value} if why else {}),
        }

    def _tell_if_later(self, promised: dict[str, str], at: datetime, why: notices.Reason) -> None:
        """The reply is now due later than the customer was told: tell them the new date, and
        why (告知进展)."""
        later = self._dates("reply")
        if promised and later and later["reply"] > promised["reply"]:
            self._request_notification(
                self._next_id("progress"), notices.Kind.PROGRESS_NOTICE, at, dates=later, why=why
            )

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}-{sum(1 for n in self.notifications if n.startswith(prefix + '-')) + 1}"

    def _dates(self, *names: str) -> dict[str, str]:
        """The due times of the open limits of these names, as promised to the customer."""
        return {
            name: d["due_at"]
            for name in names
            if (d := self.deadlines.get(name)) is not None and book.is_open(d)
        }

    # ------------------------------------------------------------- erasure (个人信息删除)
    def erase_personal_data(self, ctx: CommandContext) -> None:
        """Record that the customer's personal data is erased (their key destroyed): every
        personal field of the complaint reads as erased, at any point of its history.
        Recorded once: a complaint erased already records nothing more."""
        if self.personal_data_erased_at is None:
            self._personal_data_erased(ctx=ctx.record(), timestamp=ctx.at)

    @event("PersonalDataErased")
    def _personal_data_erased(self, *, ctx: dict[str, Any], timestamp: datetime) -> None:
        self.personal_data_erased_at = timestamp
        for notification_id, notification in self.notifications.items():
            if notification.get("task") and notification["status"] == "pending":
                # Nobody to post to or call any more: the task is void, not left open.
                self.notifications[notification_id] = {
                    **notification,
                    "status": "failed",
                    "last_error": "the customer's contact details were erased",
                    "last_failed_at": _iso(timestamp),
                }

    @property
    def refused_for(self) -> str | None:
        """The reason it was not accepted, while that refusal stands (archived or not); None
        if it was accepted, or a regulator appeal reopened it."""
        if self.refusal is None:
            return None
        reopened = any(e["at"] > self.refusal["at"] for e in self.escalations)
        return None if reopened else str(self.refusal["reason"])

    # ------------------------------------------------------------------ deadlines
    def deadline_states(self, now: datetime) -> list[dict[str, Any]]:
        """Every deadline with its state as of `now`: running, met, missed or closed."""
        paused = self.paused_at is not None
        return [
            {**d, "state": book.state(d, now, paused=paused).value} for d in self.deadlines.values()
        ]

    def running_limits(self, now: datetime) -> list[str]:
        """The keys of the limits running at `now`: while the complaint is open there is at
        least one, saying who must act next and by when."""
        return [d["key"] for d in self.deadline_states(now) if d["state"] == "running"]

    def _step(
        self,
        event_name: str,
        at: datetime,
        opened: list[dict[str, Any]] | tuple[()] = (),
        **details: Any,
    ) -> None:
        """Note a step of the timeline (with the status and level it leaves the complaint in)
        and apply it to the limits: it meets those it is named for, closes those it ends and
        starts those it opened (shared.domain.deadlines.apply)."""
        step = {
            "event": event_name,
            "at": _iso(at),
            "status": str(self.status),
            "level": str(self.level),
            **{k: v for k, v in details.items() if v is not None},
        }
        self.timeline.append(step)
        book.apply(self.deadlines, step, opened)

    def _own(self, person: str) -> None:
        self.owner = person
        self.owner_is_group = False

    def _check(self, command: Command, ctx: CommandContext) -> None:
        """Legal in the current status, and given by the owner where only the owner may."""
        if not allows(self.status, command):
            raise InvalidTransition(command, self.status)
        actor = ctx.actor
        owns = not self.owner_is_group and actor.id == self.owner
        if command in OWNER_ONLY and actor.role not in OVERSEERS and not owns:
            raise NotOwner(command, self.owner, group=self.owner_is_group)


install_upcasts(Complaint)
