"""The commands on a complaint's page: the ones the viewer may give now, each a form built from
the request body its route declares in its service's OpenAPI document (so the form asks what
the API takes, and nothing is restated here), sent with `If-Match` and an Idempotency-Key.

What "may give now" means is the lifecycle's and the roles table's (`shared.domain.lifecycle`,
`shared.http.routes`): the console offers no button the API would refuse for the status, the
role or the owner. The API still decides; its 409/412/422 come back as sentences and fields."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from shared.console.client import Answer, Api
from shared.console.i18n import Translator
from shared.domain.codes import Service, Status
from shared.domain.lifecycle import OVERSEERS, OWNER_ONLY, Command, allows
from shared.http.auth import Principal
from shared.http.fields import NOTIFICATION_ID_PATTERN
from shared.http.routes import COMMAND_ROLES, IN_STATUS, ROUTES

#: The commands in the order a complaint meets them; one form per route (a reached and an
#: unreached callback are one form).
OFFERED: tuple[Command, ...] = (
    Command.ASSIGN,
    Command.ADD_EVIDENCE,
    Command.PAUSE_CLOCK,
    Command.RESUME_CLOCK,
    Command.EXTEND,
    Command.RECORD_FINDINGS,
    Command.PROPOSE_RESOLUTION,
    Command.REPLY,
    Command.RECORD_CALLBACK,
    Command.ESCALATE,
    Command.ASSIGN_HANDLER,
    Command.REVIEW,
    Command.ARCHIVE,
    Command.REFUSE,
)
#: Rows offered for a list of objects (a resolution's remedies); empty rows are left out.
LIST_ROWS = 3
#: Enumerations shown with another code list's labels than their own name says.
LABELS_OF = {"to_level": "level", "channel": "reply_channel", "trigger": "trigger"}


@dataclass(frozen=True)
class Field:
    """One input of a command's form, named as the API names it (`remedies.0.amount`)."""

    name: str
    kind: str  # select, bool, text, textarea, lines, many, datetime
    required: bool
    label: str  # the catalogue key of its label (`arg.<name>`, `field.<name within>`)
    choices: tuple[str, ...] = ()
    codes: str = ""  # the catalogue group of its choices' labels
    default: str = ""
    maxlength: int | None = None
    #: The optional objects it is in (`complaint`, a list's row `remedies.0`): one whose
    #: inputs are all empty is left out of the body.
    optional_in: tuple[str, ...] = ()


@dataclass
class Offer:
    """A command the viewer may give now, with its form (or the service that could not be
    reached for it)."""

    command: Command
    service: Service
    path: str
    fields: list[Field] = field(default_factory=list)
    unavailable: str | None = None
    notification: str = ""  # a task's id, for its confirmation

    @property
    def form_id(self) -> str:
        return form_id(self.command, self.notification)

    def target(self, complaint_id: object) -> str:
        return self.path.replace("{id}", str(complaint_id)).replace(
            "{notification_id}", self.notification
        )


def form_id(command: Command, notification: str = "") -> str:
    """The id of a command's form on the page (a task's confirmation: one form per task)."""
    return f"cmd-{command.value}" + (f"-{notification}" if notification else "")


def may_give(command: Command, view: dict[str, Any], principal: Principal) -> bool:
    """The status allows it, the user's roles may give it, and an owner-only command is given
    by its owner or an overseer (as the aggregate checks)."""
    if not allows(view["status"], command) or principal.acting_as(COMMAND_ROLES[command]) is None:
        return False
    if (Status(view["status"]), command) in IN_STATUS:
        return False  # given another way in this status (a regulator's appeal): not a form here
    if command == Command.PAUSE_CLOCK and view.get("clock_paused"):
        return False
    if command == Command.RESUME_CLOCK and not view.get("clock_paused"):
        return False
    if command in OWNER_ONLY and not any(r in OVERSEERS for r in principal.roles):
        return not view.get("owner_is_group") and view.get("owner") == principal.sub
    return True


def open_tasks(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Messages staff carry out (a letter, a call) not yet confirmed."""
    return [
        n
        for n in view.get("notifications", [])
        if n.get("task") and not n.get("confirmed_by") and n.get("status") != "sent"
    ]


async def offers(api: Api, view: dict[str, Any], principal: Principal) -> list[Offer]:
    """The forms of the commands this user may give on this complaint now. Each service's
    document is asked for once, all at the same time, so a service that does not answer
    costs the page one timeout, not one per command."""
    wanted = [(command, "") for command in OFFERED if may_give(command, view, principal)]
    if principal.acting_as(COMMAND_ROLES[Command.CONFIRM_NOTIFICATION]) is not None:
        wanted += [(Command.CONFIRM_NOTIFICATION, str(task["id"])) for task in open_tasks(view)]
    services = sorted({ROUTES[command][0] for command, _ in wanted})
    await asyncio.gather(*(api.document(service) for service in services))
    return [await offer(api, command, task) for command, task in wanted]


async def body_fields(
    api: Api, route: tuple[Service, str], within: str | None = None
) -> list[Field] | None:
    """A route's request body as form inputs (`form_fields`), as its service's OpenAPI
    document declares it; None when that service cannot be reached."""
    schema = await api.request_schema(*route)
    return None if schema is None else form_fields(*schema, within=within)


async def offer(api: Api, command: Command, notification: str = "") -> Offer:
    """A command's form as its route's body asks."""
    service, path = ROUTES[command]
    fields = await body_fields(api, ROUTES[command])
    if fields is None:
        return Offer(command, service, path, unavailable=service.value, notification=notification)
    return Offer(command, service, path, fields, notification=notification)


def form_fields(
    schema: dict[str, Any],
    doc: dict[str, Any],
    prefix: str = "",
    *,
    within: str | None = None,
    optional_in: tuple[str, ...] = (),
) -> list[Field]:
    """A JSON Schema object as form inputs: enumerations as choices, booleans as yes/no, times
    as the browser's date-time field, lists of text one item per line, lists of objects as a
    few rows of their fields, an object within it as its fields (`complaint.customer.phone`).

    Labels: `arg.<name>`; the fields of an object within (from `within=""` on, as the
    acceptance form labels the body of POST /complaints) `field.<name within it>`."""
    schema = _resolved(schema, doc)
    required = set(schema.get("required", []))
    fields: list[Field] = []
    for name, prop in schema.get("properties", {}).items():
        full = f"{prefix}{name}"
        prop, nullable = _unwrapped(_resolved(prop, doc), doc)
        needed = name in required and not nullable
        if prop.get("type") == "object" and "properties" in prop:
            inner = f"{within}{name}." if within is not None else ""
            kept = optional_in if needed else (*optional_in, full)
            fields.extend(form_fields(prop, doc, f"{full}.", within=inner, optional_in=kept))
            continue
        items = _resolved(prop.get("items", {}), doc) if prop.get("type") == "array" else None
        if items is not None and items.get("type") == "object":
            for row in range(LIST_ROWS):
                each = f"{full}.{row}"
                fields.extend(form_fields(items, doc, f"{each}.", optional_in=(*optional_in, each)))
            continue
        label = f"field.{within}{name}" if within is not None else f"arg.{name}"
        fields.append(_field(full, name, prop, needed, items, label, optional_in))
    return fields


def _field(
    full: str,
    name: str,
    prop: dict[str, Any],
    required: bool,
    items: dict[str, Any] | None,
    label: str,
    optional_in: tuple[str, ...],
) -> Field:
    default = prop.get("default")
    shown = "" if default is None else str(default)
    if isinstance(default, bool):
        shown = "true" if default else "false"
    kind, codes = "textarea", ""
    choices: tuple[str, ...] = ()
    if "enum" in prop:
        kind, choices = "select", tuple(str(c) for c in prop["enum"])
        named = LABELS_OF.get(name) if label.startswith("arg.") else None
        codes = named or _snake(str(prop.get("title", name)))
    elif prop.get("type") == "boolean":
        kind = "bool"
    elif items is not None and "enum" in items:  # some of a list of codes: one box each
        kind, choices = "many", tuple(str(c) for c in items["enum"])
        codes = LABELS_OF.get(name) or name
    elif items is not None:
        kind = "lines"
    elif prop.get("format") == "date-time":
        kind = "datetime"
    elif (prop.get("maxLength") or 0) <= 500 or prop.get("format") == "uri":
        kind = "text"  # identifiers, references, short reasons, addresses
    return Field(
        name=full,
        kind=kind,
        required=required,
        label=label,
        choices=choices,
        codes=codes,
        default=shown,
        maxlength=prop.get("maxLength"),
        optional_in=optional_in,
    )


def _resolved(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not ref:
        return schema
    target: dict[str, Any] = doc
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}


def _unwrapped(schema: dict[str, Any], doc: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """`X | None` (anyOf with null) as X, and whether null is allowed."""
    variants = schema.get("anyOf")
    if not variants:
        return schema, False
    kept = [_resolved(v, doc) for v in variants if v.get("type") != "null"]
    nullable = len(kept) < len(variants)
    outer = {k: v for k, v in schema.items() if k != "anyOf"}
    return ({**kept[0], **outer} if len(kept) == 1 else schema), nullable


def _snake(title: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", title.replace(" ", "")).lower()


# -- the form as the API's body ----------------------------------------------------------------


class _Rows(dict[int, Any]):
    """A list's rows by their number while the body is put together."""


def request_body(fields: list[Field], form: dict[str, str], local_time: Any) -> dict[str, Any]:
    """The submitted form as the command's JSON body: dotted names nest (`customer.phone`),
    numbered ones are a list's rows (`remedies.0.amount`). Empty optional inputs are left out
    (a required one is sent empty, for the API to name), and so is an optional object or a
    list's row with nothing filled in."""
    typed = {f.name: form.get(f.name, "").strip() for f in fields}
    filled = {p for f in fields if typed[f.name] for p in f.optional_in}
    body: dict[str, Any] = {}
    for f in fields:
        left_out = [p for p in f.optional_in if p not in filled]
        if left_out:
            if left_out == [f.optional_in[-1]] and _is_row(left_out[0]):
                _put(body, left_out[0].split(".")[:-1], None)  # the list, maybe with no rows
            continue
        if typed[f.name] or f.required:
            _put(body, f.name.split("."), _value(f, typed[f.name], local_time))
    nested: dict[str, Any] = _listed(body)
    return nested


def _is_row(name: str) -> bool:
    return name.rsplit(".", 1)[-1].isdigit()


def _put(body: dict[Any, Any], parts: list[str], value: Any) -> None:
    """`value` at its dotted place; None: only the containers on the way."""
    target: dict[Any, Any] = body
    for part, after in zip(parts, [*parts[1:], None], strict=True):
        key: Any = int(part) if isinstance(target, _Rows) else part
        if after is None:
            if value is not None:
                target[key] = value
            elif key not in target:
                target[key] = _Rows()
            return
        if key not in target:
            target[key] = _Rows() if after.isdigit() else {}
        target = target[key]


def _listed(value: Any) -> Any:
    if isinstance(value, _Rows):
        return [_listed(row) for _, row in sorted(value.items())]
    if isinstance(value, dict):
        return {k: _listed(v) for k, v in value.items()}
    return value


def _value(f: Field, raw: str, local_time: Any) -> Any:
    if f.kind == "bool":
        return {"true": True, "false": False}.get(raw, raw)
    if f.kind in ("lines", "many"):  # (the boxes ticked come one per line: `submitted`)
        return [line.strip() for line in raw.splitlines() if line.strip()]
    if f.kind == "datetime" and raw:
        return local_time(raw)
    return raw


def submitted(pairs: list[tuple[str, str]], fields: list[Field]) -> dict[str, str]:
    """A form's fields as `request_body` reads them: the last value of each name, except the
    boxes of a `many` input, all of them one per line."""
    many = {f.name for f in fields if f.kind == "many"}
    form: dict[str, str] = {}
    for name, value in pairs:
        ticked = name in many and name in form
        form[name] = f"{form[name]}\n{value}" if ticked else value
    return form


def errors_by_field(
    fields: list[Field], errors: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """A 422's errors next to the inputs they name (the longest input name that prefixes the
    error's field: `satisfaction.enum` → `satisfaction`); the rest as sentences."""
    names = sorted((f.name for f in fields), key=len, reverse=True)
    placed: dict[str, str] = {}
    rest: list[str] = []
    for where, message in errors.items():
        name = next((n for n in names if where == n or where.startswith(n + ".")), None)
        if name is None:
            rest.append(f"{where}: {message}")
        else:
            placed.setdefault(name, message)
    return placed, rest


def refusal(fields: list[Field], answer: Answer, t: Translator) -> tuple[dict[str, str], str]:
    """A refused form's errors by input, and the sentence above the form: "see the fields"
    when any is placed, else the problem's own, then the errors no input takes."""
    placed, rest = errors_by_field(fields, answer.field_errors())
    return placed, " ".join([t("new.errors") if placed else answer.detail, *rest])


def task_id(value: str) -> str | None:
    """A task's id as a form sends it ("" for none), if it is one: it goes into the route's
    path."""
    if not value:
        return ""
    return value if re.fullmatch(NOTIFICATION_ID_PATTERN, value) else None


def known(command: str) -> Command | None:
    """A command the pages offer, by its name in a URL."""
    try:
        found = Command(command)
    except ValueError:
        return None
    return found if found in OFFERED or found == Command.CONFIRM_NOTIFICATION else None
