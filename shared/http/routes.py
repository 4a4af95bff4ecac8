"""Which service serves each command, and where: what a 409 tells a client it may send now."""

from __future__ import annotations

from shared.domain.codes import Role, Service, Status
from shared.domain.lifecycle import STAGES, Command

#: Where a client gives each command (docs/api.md): the service and the route. Commands missing here
#: are the services' own (the deadline watch, the dispatcher). A test checks each route exists.
ROUTES: dict[Command, tuple[Service, str]] = {
    Command.REFUSE: (Service.INTAKE, "/complaints/{id}/refusal"),
    Command.ASSIGN: (Service.INVESTIGATION, "/complaints/{id}/assignment"),
    Command.ADD_EVIDENCE: (Service.INVESTIGATION, "/complaints/{id}/evidence"),
    Command.EXTEND: (Service.INVESTIGATION, "/complaints/{id}/extension"),
    Command.RECORD_FINDINGS: (Service.INVESTIGATION, "/complaints/{id}/findings"),
    Command.PROPOSE_RESOLUTION: (Service.INVESTIGATION, "/complaints/{id}/resolution"),
    Command.REPLY: (Service.INVESTIGATION, "/complaints/{id}/reply"),
    Command.PAUSE_CLOCK: (Service.INVESTIGATION, "/complaints/{id}/pause"),
    Command.RESUME_CLOCK: (Service.INVESTIGATION, "/complaints/{id}/resume"),
    Command.ESCALATE: (Service.ESCALATION, "/complaints/{id}/escalation"),
    Command.ASSIGN_HANDLER: (Service.ESCALATION, "/complaints/{id}/handler"),
    Command.REVIEW: (Service.ESCALATION, "/complaints/{id}/review"),
    Command.RECORD_CALLBACK: (Service.CALLBACK, "/complaints/{id}/callback"),
    Command.RECORD_UNREACHED_CALLBACK: (Service.CALLBACK, "/complaints/{id}/callback"),
    Command.ARCHIVE: (Service.CALLBACK, "/complaints/{id}/archive"),
    Command.CONFIRM_NOTIFICATION: (
        Service.INVESTIGATION,
        "/complaints/{id}/notifications/{notification_id}/confirmation",
    ),
}


#: Where a complaint is accepted, and who may accept (or refuse) one: the intake routes and
#: the console's form both take it from here.
ACCEPT: tuple[Service, str] = (Service.INTAKE, "/complaints")
ACCEPT_ROLES: frozenset[Role] = frozenset({Role.AGENT, Role.SUPERVISOR})

_INVESTIGATORS = frozenset({Role.INVESTIGATOR, Role.SUPERVISOR})
_STAFF = frozenset({Role.AGENT, Role.INVESTIGATOR, Role.CALLBACK, Role.SUPERVISOR})
_SUPERVISORS = frozenset({Role.SUPERVISOR})
_CALLBACK = frozenset({Role.CALLBACK, Role.SUPERVISOR})

#: Who may give each command (docs/api.md "Who may do what"; `admin` may do everything). The
#: routes authorise from here, and the console offers a command only to these roles.
COMMAND_ROLES: dict[Command, frozenset[Role]] = {
    Command.REFUSE: ACCEPT_ROLES,
    Command.ASSIGN: _SUPERVISORS,
    Command.ADD_EVIDENCE: _INVESTIGATORS,
    Command.EXTEND: _INVESTIGATORS,
    Command.RECORD_FINDINGS: _INVESTIGATORS,
    Command.PROPOSE_RESOLUTION: _INVESTIGATORS,
    Command.REPLY: _INVESTIGATORS,
    Command.PAUSE_CLOCK: _INVESTIGATORS,
    Command.RESUME_CLOCK: _INVESTIGATORS,
    Command.CONFIRM_NOTIFICATION: _STAFF,
    Command.ESCALATE: _STAFF,
    Command.ASSIGN_HANDLER: _SUPERVISORS,
    Command.REVIEW: _SUPERVISORS,
    Command.RECORD_CALLBACK: _CALLBACK,
    Command.RECORD_UNREACHED_CALLBACK: _CALLBACK,
    Command.ARCHIVE: _CALLBACK,
}
#: Who reads the improvement report, and who the audit export, checkpoints and key.
REPORT_ROLES: frozenset[Role] = frozenset({Role.ANALYST, Role.SUPERVISOR, Role.REGULATOR})
#: Where the improvement report is read: the callback service alone serves it.
REPORT: tuple[Service, str] = (Service.CALLBACK, "/reports/improvement")
AUDIT_ROLES: frozenset[Role] = frozenset({Role.REGULATOR, Role.ANALYST})
#: Who keeps the webhook subscriptions and erases a customer's personal data: the intake
#: routes authorise from here, and the console shows its admin page to these roles.
ADMIN_ROLES: frozenset[Role] = frozenset({Role.ADMIN})
#: Where they are kept (intake alone serves them): the console's admin page calls these.
SUBSCRIPTIONS: tuple[Service, str] = (Service.INTAKE, "/subscriptions")
ERASURE: tuple[Service, str] = (Service.INTAKE, "/customers/{customer_id}/erasure")


#: Where a regulator's appeal (申诉) comes in: the escalation routes and the console's page.
APPEAL: tuple[Service, str] = (Service.ESCALATION, "/appeals")

#: Where a command is given differently in one status: only a regulator's appeal escalates a
#: refused complaint.
IN_STATUS: dict[tuple[Status, Command], tuple[Service, str]] = {
    (Status.REFUSED, Command.ESCALATE): APPEAL,
}


def allowed_routes(status: str) -> list[str]:
    """What a client may send in this status: `POST <path> (<service>)`, for a 409."""
    found = {
        f"POST {path} ({service.value})"
        for command in STAGES[Status(status)].commands
        if command in ROUTES
        for service, path in [IN_STATUS.get((Status(status), command), ROUTES[command])]
    }
    return sorted(found)
