"""The fixed codes of the HTTP contract (docs/api.md), shared by the domain and the schemas."""

from enum import StrEnum


class Channel(StrEnum):
    HOTLINE = "hotline"
    BUSINESS_HALL = "business_hall"
    WEB = "web"
    APP = "app"
    EMAIL = "email"
    SOCIAL_MEDIA = "social_media"
    LETTER = "letter"
    REGULATOR = "regulator"


class BusinessType(StrEnum):
    MOBILE = "mobile"
    BROADBAND = "broadband"
    FIXED_LINE = "fixed_line"
    DATA = "data"
    VALUE_ADDED = "value_added"


class Category(StrEnum):
    NETWORK_COVERAGE = "network_coverage"
    BILLING = "billing"
    SERVICE_ATTITUDE = "service_attitude"
    BUSINESS_HANDLING = "business_handling"
    FAULT_REPAIR = "fault_repair"
    #: 装移机: installing or moving a line.
    INSTALLATION = "installation"
    OTHER = "other"


class ReplyChannel(StrEnum):
    PHONE = "phone"
    SMS = "sms"
    EMAIL = "email"
    LETTER = "letter"
    IN_PERSON = "in_person"


class VipTier(StrEnum):
    SUPREME = "supreme"
    DIAMOND = "diamond"
    GOLD = "gold"
    SILVER = "silver"


class Area(StrEnum):
    """Where the service is delivered; the repair limits of the standard differ by area."""

    URBAN = "urban"
    SUBURBAN_COUNTY = "suburban_county"
    RURAL = "rural"


class RefusalReason(StrEnum):
    OUT_OF_SCOPE = "out_of_scope"
    TIME_BARRED = "time_barred"
    REPEAT_WITH_CONCLUSION = "repeat_with_conclusion"


class Complexity(StrEnum):
    SIMPLE = "simple"
    COMPLEX = "complex"


class EvidenceKind(StrEnum):
    CALL_RECORD = "call_record"
    BUSINESS_RECORD = "business_record"
    SYSTEM_LOG = "system_log"
    RECORDING = "recording"
    CUSTOMER_STATEMENT = "customer_statement"


class RemedyType(StrEnum):
    FEE_WAIVER = "fee_waiver"
    REFUND = "refund"
    COMPENSATION = "compensation"
    SERVICE_ADJUSTMENT = "service_adjustment"
    APOLOGY = "apology"


class EscalationTrigger(StrEnum):
    CUSTOMER_DISSATISFIED = "customer_dissatisfied"
    DEADLINE_MISSED = "deadline_missed"
    MAJOR_INCIDENT = "major_incident"
    REGULATOR_APPEAL = "regulator_appeal"


class IncidentAction(StrEnum):
    """What a major incident did with a complaint that joined it."""

    #: Went one level up with trigger `major_incident`.
    ESCALATED = "escalated"
    #: Linked only: it could not go up (see `NotEscalated`).
    LINKED = "linked"


class NotEscalated(StrEnum):
    """Why a complaint that joined a major incident was linked and not escalated."""

    REFUSED = "refused"
    ARCHIVED = "archived"
    AT_HEADQUARTERS = "at_headquarters"
    #: Its status allows no escalation.
    STATUS = "status"


class Level(StrEnum):
    """Escalation levels, lowest first: frontline (city) → provincial → headquarters."""

    CITY = "city"
    PROVINCIAL = "provincial"
    HEADQUARTERS = "headquarters"

    @property
    def rank(self) -> int:
        return list(Level).index(self)


class ReviewOutcome(StrEnum):
    UPHELD = "upheld"
    REVISED = "revised"


class Satisfaction(StrEnum):
    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    DISSATISFIED = "dissatisfied"


class Status(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    INVESTIGATING = "investigating"
    RESOLUTION_PROPOSED = "resolution_proposed"
    REPLIED = "replied"
    ESCALATED = "escalated"
    CALLBACK_DONE = "callback_done"
    ARCHIVED = "archived"


class Role(StrEnum):
    AGENT = "agent"
    INVESTIGATOR = "investigator"
    SUPERVISOR = "supervisor"
    CALLBACK = "callback"
    ANALYST = "analyst"
    REGULATOR = "regulator"
    ADMIN = "admin"


class Service(StrEnum):
    INTAKE = "intake"
    INVESTIGATION = "investigation"
    ESCALATION = "escalation"
    CALLBACK = "callback"


class DeadlineState(StrEnum):
    RUNNING = "running"
    MET = "met"
    MISSED = "missed"
    #: Closed before it was due without its event: the complaint was refused or archived, or
    #: left the status whose action it asked for (shared.domain.deadlines).
    CLOSED = "closed"
