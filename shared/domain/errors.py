"""Domain errors. `shared.http.errors` maps each to one HTTP status."""


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""


class ComplaintNotFound(DomainError):
    def __init__(self, complaint_id: object, detail: str | None = None) -> None:
        super().__init__(detail or f"No complaint with id {complaint_id}.")
        self.complaint_id = complaint_id


class IncidentNotFound(DomainError):
    def __init__(self, incident_id: object) -> None:
        super().__init__(f"No major incident with id {incident_id}.")
        self.incident_id = incident_id


class InvalidTransition(DomainError):
    """A command that is not legal in the complaint's current status (→ 409)."""

    def __init__(self, command: str, status: str, detail: str | None = None) -> None:
        message = f"Cannot {command} a complaint whose status is '{status}'."
        if detail:
            message = f"{message} {detail}"
        super().__init__(message)
        self.command = command
        self.status = status


class NotPermitted(DomainError):
    """The actor may give this command in general but not here (→ 403)."""


class NotOwner(NotPermitted):
    """A command only the complaint's named owner (or a supervisor) may give (→ 403)."""

    def __init__(self, command: str, owner: str, *, group: bool = False) -> None:
        if group:
            who = f"a supervisor: the {owner} have not named its handler yet"
        else:
            who = f"{owner}, who owns this complaint, or a supervisor"
        super().__init__(f"Only {who} may {command.replace('_', ' ')}.")
        self.command = command
        self.owner = owner


class InvalidCommand(DomainError):
    """A command whose content contradicts the complaint's facts (→ 422)."""


class VersionMismatch(DomainError):
    """`If-Match` named a version the complaint has moved on from (→ 412)."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(
            f"The complaint is at version {actual}, not {expected}; read it again and retry."
        )
        self.expected = expected
        self.actual = actual


class ConcurrentModification(DomainError):
    """Other writers kept winning the race after every retry (→ 409)."""


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key presented with another request than the one it was first used for,
    after that request's stored answer is gone (→ 422)."""

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was used with a different request; "
            "send this request with a new key."
        )


class PolicyError(DomainError):
    """The time-limit policy file is invalid."""
