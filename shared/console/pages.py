"""The console's pages (`/console/`): server-rendered from what the JSON API answers the
signed-in user. Nothing here decides who may see what or whether input is valid: the API
does, and the pages show its answer (its masks, its 422's fields, its problem's sentence)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache, partial
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from starlette.background import BackgroundTask

from shared.console import commands, session
from shared.console.client import Answer, Api, Stream
from shared.console.i18n import LANGUAGES, Translator, language
from shared.domain.clock import system_clock
from shared.domain.codes import (
    Channel,
    Level,
    Role,
    Service,
)
from shared.domain.policy import Policy, load_policies
from shared.http.auth import (
    MAX_DEPARTMENT_LENGTH,
    InvalidToken,
    KeysUnavailable,
    Principal,
    mint_token,
    token_principal,
)
from shared.http.fields import IDEMPOTENCY_KEY_PATTERN
from shared.http.routes import ACCEPT, ACCEPT_ROLES, ADMIN_ROLES, AUDIT_ROLES, REPORT_ROLES
from shared.http.state import clock_of, settings_of

router = APIRouter(prefix=session.PREFIX, include_in_schema=False)

#: The pages load nothing from another host, run no inline script and cannot be framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
#: The queues (tabs) and the searches of the home page, in the order shown.
Queue = Literal["all", "mine", "department", "due", "overdue", "escalated", "tasks", "incidents"]
Search = Literal["acceptance_no", "phone", "customer_id"]
QUEUES: tuple[str, ...] = get_args(Queue)
SEARCHES: tuple[str, ...] = get_args(Search)
PAGE_SIZE = 50

_env = Environment(
    loader=PackageLoader("shared.console", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


@lru_cache(maxsize=8)
def _policy_zone(path: Path) -> ZoneInfo:
    return Policy.load(path).tz


@lru_cache(maxsize=8)
def _policy_versions(directory: Path, path: Path) -> tuple[str, ...]:
    return tuple(sorted(load_policies(directory, Policy.load(path))))


def policy_versions(request: Request) -> tuple[str, ...]:
    """The policy versions a report may be re-analysed under (the report's own list:
    `COMPLAINTS_POLICY_DIR` and the policy in force), read once."""
    settings = settings_of(request)
    return _policy_versions(settings.policy_dir, settings.policy_path)


def display_tz(request: Request) -> ZoneInfo:
    """The time zone the console shows and takes times in: the policy's (`timezone`, the
    calendar its working days are counted in), read once per policy file."""
    return _policy_zone(settings_of(request).policy_path)


def shown_time(value: str | datetime | None, tz: ZoneInfo) -> str:
    """An API time as the staff read it: local time to the minute."""
    if not value:
        return ""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


@pass_context
def _time_filter(context: Context, value: str | datetime | None) -> str:
    """`{{ at | time }}`: in the zone the page was rendered for (`tz`)."""
    return shown_time(value, context["tz"])


def countdown(seconds: float, t: Translator) -> str:
    """`2d 3h`, `3h 05m`, `12m`; past due: `overdue 12m` (the script keeps it moving)."""
    late = seconds < 0
    minutes = int(abs(seconds) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    text = f"{days}d {hours}h" if days else f"{hours}h {mins:02d}m" if hours else f"{mins}m"
    return f"{t('countdown.overdue')} {text}" if late else text


_env.filters["time"] = _time_filter
_env.filters["short"] = lambda value: (value or "")[:12]
_env.filters["pretty"] = lambda value: json.dumps(value, ensure_ascii=False, indent=2)


def may(principal: Principal | None, roles: frozenset[Role]) -> bool:
    """Whether the user holds a role the API lets do this (the console shows no more)."""
    return principal is not None and principal.acting_as(roles) is not None


def translator(request: Request) -> Translator:
    """The user's language (its cookie), the pages' words in it."""
    return Translator(language(request.cookies.get(session.LANGUAGE_COOKIE)))


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    principal: Principal | None = None,
    **context: Any,
) -> HTMLResponse:
    t = translator(request)
    base = session.base(request)
    html = _env.get_template(template).render(
        t=t,
        lang=t.lang,
        other_lang=next(code for code in LANGUAGES if code != t.lang),
        base=base,
        static=base + "/static",
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        tz=display_tz(request),
        user=principal,
        may_accept=may(principal, ACCEPT_ROLES),
        may_report=may(principal, REPORT_ROLES),
        may_audit=may(principal, AUDIT_ROLES),
        may_admin=may(principal, ADMIN_ROLES),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def error_page(
    request: Request, status: int, message: str, principal: Principal | None = None
) -> HTMLResponse:
    return render(request, "error.html", status=status, principal=principal, message=message)


def refused_origin(request: Request) -> HTMLResponse:
    return error_page(request, 403, translator(request)("csrf.refused"))


def signin_page(request: Request, status: int = 200, error: str | None = None) -> HTMLResponse:
    development = settings_of(request).environment == "development"
    return render(
        request,
        "signin.html",
        status=status,
        development=development,
        roles=[role.value for role in Role],
        error=error,
        max_department=MAX_DEPARTMENT_LENGTH,
    )


def signed_out(request: Request) -> HTMLResponse:
    """The session's token no longer verifies (expired): sign in again."""
    page = signin_page(request, status=401, error=translator(request)("signin.expired"))
    session.forget_token(request, page)
    return page


def problem(
    request: Request, principal: Principal, answer: Answer, message: str | None = None
) -> HTMLResponse:
    """The API's refusal as a page: its sentence (or the page's own) and each bad field's (a
    422's `errors`)."""
    said = answer.detail if message is None else message
    errors = answer.field_errors()
    if errors:
        said += ": " + "; ".join(f"{name}: {text}" for name, text in errors.items())
    return error_page(request, answer.status, said, principal)


class PageAnswer(Exception):
    """The page to answer instead of the route's own: raised by a dependency that cannot give
    the route what it needs (no session, a POST from elsewhere, a bad period) or by a route's
    `Signed.ok` on the API's refusal; `install_console` answers it as it is."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def answer_page(request: Request, exc: Exception) -> Response:
    """The exception handler of PageAnswer."""
    assert isinstance(exc, PageAnswer)
    return exc.response


@dataclass(frozen=True)
class Signed:
    """The signed-in user of a page's request: their token and who it names, the API as
    they call it, and the pages' words in their language."""

    request: Request
    token: str
    principal: Principal
    api: Api
    t: Translator

    def page(self, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
        return render(self.request, template, status=status, principal=self.principal, **context)

    def error(self, status: int, message: str) -> HTMLResponse:
        """The error page with the page's own sentence."""
        return error_page(self.request, status, message, self.principal)

    def unreachable(self, service: Service) -> HTMLResponse:
        return self.error(503, self.t("command.unreachable").format(service=service.value))

    def require(self, roles: frozenset[Role]) -> None:
        """A page only the holders of `roles` may use: the API would refuse anyone else, so
        the page does not ask it (a 403 in the page's words)."""
        if not may(self.principal, roles):
            raise PageAnswer(self.error(403, self.t("error.forbidden")))

    def current(self, answer: Answer) -> Answer:
        """The API's answer, unless it says the session's token no longer verifies (401):
        then the sign-in page."""
        if answer.status == 401:
            raise PageAnswer(signed_out(self.request))
        return answer

    def ok(self, answer: Answer, *, forbidden: bool = False) -> Answer:
        """The API's answer if it is a success; its 401 the sign-in page, any other refusal
        its problem's page (a 403 in the page's words if `forbidden`)."""
        if not self.current(answer).ok:
            message = self.t("error.forbidden") if forbidden and answer.status == 403 else None
            raise PageAnswer(problem(self.request, self.principal, answer, message))
        return answer

    def ok_stream(self, stream: Stream | Answer, *, forbidden: bool = False) -> Stream:
        """A stream the API answered, or its refusal's page as `ok` says."""
        if isinstance(stream, Answer):
            self.ok(stream, forbidden=forbidden)
            raise AssertionError("a stream's answer is a refusal")  # `stream` gives no 2xx
        return stream


async def maybe_signed_in(request: Request) -> Signed | None:
    """The session's user, if there is one (the home page: without one, the sign-in page,
    200)."""
    found = await session.signed_in(request)
    if found is None:
        return None
    token, principal = found
    return Signed(request, token, principal, Api(request, token), translator(request))


async def signed_in_user(request: Request) -> Signed:
    """The session's user; without one (or with a token that no longer verifies), the
    sign-in page, 401."""
    user = await maybe_signed_in(request)
    if user is None:
        raise PageAnswer(signin_page(request, status=401))
    return user


async def same_origin(request: Request) -> None:
    """That a form's POST comes from a page of this site (CSRF); from elsewhere, 403."""
    if not session.same_origin(request):
        raise PageAnswer(refused_origin(request))


async def signed_in_sender(request: Request) -> Signed:
    """The user of a form's POST, once it is known to come from this site."""
    await same_origin(request)
    return await signed_in_user(request)


#: A page's signed-in user; a form's POST's (from this site).
Viewer = Annotated[Signed, Depends(signed_in_user)]
Sender = Annotated[Signed, Depends(signed_in_sender)]
Visitor = Annotated[Signed | None, Depends(maybe_signed_in)]
#: A POST that needs no session (sign-in, sign-out), only this site's origin.
SameOrigin = Depends(same_origin)


def streamed(
    stream: Stream, headers: dict[str, str], media_type: str | None = None
) -> StreamingResponse:
    """The API's answer passed on as it comes (a file to download), its upstream closed when
    it is done, or when the download is left."""
    return StreamingResponse(
        stream.chunks(),
        media_type=media_type or stream.media_type,
        headers={**SECURITY_HEADERS, **headers},
        background=BackgroundTask(stream.aclose),
    )


def _home(request: Request) -> str:
    return session.base(request) + "/"


# -- sign-in, sign-out, language ---------------------------------------------------------------


@router.post("/signin", dependencies=[SameOrigin])
async def sign_in(request: Request) -> Response:
    """Development: a role and a name mint a development token. Anywhere: a pasted token.
    Either is verified as the API verifies it before it is kept."""
    form = await read_form(request)
    t = translator(request)
    settings = settings_of(request)
    token = form.get("token", "").strip()
    if not token and ("role" in form or "name" in form):
        if settings.environment != "development":
            return signin_page(request, 403, t("signin.picker_off"))
        role, name = form.get("role", ""), form.get("name", "").strip()
        department = form.get("department", "").strip() or None
        try:
            token = mint_token(
                settings,
                name,
                [role],
                timedelta(hours=session.DEV_TOKEN_HOURS),
                system_clock(),
                department,
            )
        except ValueError as exc:  # an unknown role
            return signin_page(request, 422, str(exc))
    try:
        await token_principal(request.scope, token)
    except InvalidToken as exc:
        return signin_page(request, 401, f"{t('signin.invalid')}: {exc}")
    except KeysUnavailable:
        return signin_page(request, 503, t("signin.unavailable"))
    response = RedirectResponse(_home(request), status_code=303)
    session.keep_token(request, response, token)
    return response


@router.post("/signout", dependencies=[SameOrigin])
async def sign_out(request: Request) -> Response:
    response = RedirectResponse(_home(request), status_code=303)
    session.forget_token(request, response)
    return response


@router.get("/language/{lang}")
async def switch_language(
    request: Request,
    lang: Literal["zh", "en"],
    next: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    response = RedirectResponse(session.safe_next(next, request), status_code=303)
    session.keep_language(request, response, lang)
    return response


# -- queues --------------------------------------------------------------------------------------


def queue_filters(
    view: str,
    principal: Principal,
    now: datetime,
    hours: int,
    level: Level | None,
    department: str | None = None,
) -> list[tuple[str, str]]:
    """A queue as the list's filters (docs/api.md "Reads"); `department`: the user's (the
    token's claim, or the one typed when the token has none)."""
    if view == "mine":
        return [("owner", principal.sub)]
    if view == "department":
        return [("department", department)] if department else []
    if view == "due":
        return [("due_before", (now + timedelta(hours=hours)).isoformat()), ("sort", "due")]
    if view == "overdue":
        return [("overdue", "true"), ("sort", "due")]
    if view == "escalated":
        return [("status", "escalated"), *([("level", level.value)] if level else [])]
    if view == "tasks":
        return [("task", "true")]
    return []


def next_limit(item: dict[str, Any]) -> str | None:
    """When the soonest running limit of a summary falls due; with none running, the limit
    it missed (the countdown then says how late it is)."""
    for state in ("running", "missed"):
        due = [str(d["due_at"]) for d in item.get("deadlines", []) if d.get("state") == state]
        if due:
            return min(due, key=datetime.fromisoformat)
    return None


@router.get("/")
async def queues(
    request: Request,
    user: Visitor,
    view: Queue = "all",
    hours: Annotated[int, Query(ge=1, le=24 * 30)] = 24,
    level: Level | None = None,
    department: Annotated[str | None, Query(max_length=MAX_DEPARTMENT_LENGTH)] = None,
    by: Search = "acceptance_no",
    q: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    """The home page: the sign-in page without a session, the queues with one."""
    if user is None:
        return signin_page(request)
    principal, t = user.principal, user.t
    now = clock_of(request)()
    search = (q or "").strip()
    if view == "incidents" and not search:
        return await incidents_queue(user, cursor)
    # the token's department; lacking one, the one typed into the page's form
    typed = None if principal.department else (department or "").strip() or None
    own_department = principal.department or typed
    ask_department = view == "department" and not search and own_department is None
    filters = (
        [(by, search)]
        if search
        else queue_filters(view, principal, now, hours, level, own_department)
    )
    params = [*filters, ("limit", str(PAGE_SIZE)), *([("cursor", cursor)] if cursor else [])]
    answer = (
        Answer(200, {"items": [], "next_cursor": None})  # nothing to list before one is typed
        if ask_department
        else user.current(await user.api.get("/complaints", params))
    )
    items = answer.body.get("items", []) if answer.ok else []
    rows = []
    for item in items:
        due = next_limit(item)
        left = (datetime.fromisoformat(due) - now).total_seconds() if due else None
        rows.append(
            {
                **item,
                "next_due": due,
                "countdown": countdown(left, t) if left is not None else t("countdown.none"),
                "late": left is not None and left < 0,
            }
        )
    this_queue = [
        ("view", view),
        ("hours", str(hours)),
        *([("level", level.value)] if level else []),
        *([("department", typed)] if typed and view == "department" else []),
        *([("by", by), ("q", search)] if search else []),
    ]
    next_cursor = answer.body.get("next_cursor") if answer.ok else None
    return user.page(
        "queues.html",
        status=200 if answer.ok else answer.status,
        view=view,
        views=QUEUES,
        hours=hours,
        level=level.value if level else "",
        levels=[lv.value for lv in Level],
        department=own_department or "",
        department_typed=typed is not None or ask_department,
        max_department=MAX_DEPARTMENT_LENGTH,
        by=by,
        searches=SEARCHES,
        q=search,
        rows=rows,
        error=None if answer.ok else answer.detail,
        now=now.isoformat(),
        first_query=this_queue if cursor else None,
        next_query=[*this_queue, ("cursor", next_cursor)] if next_cursor else None,
    )


async def incidents_queue(user: Signed, cursor: str | None) -> Response:
    """The major incidents (群体性投诉) the escalation service has declared, newest first."""
    params = [("limit", str(PAGE_SIZE)), *([("cursor", cursor)] if cursor else [])]
    answer = user.current(await user.api.get("/incidents", params, service=Service.ESCALATION))
    next_cursor = answer.body.get("next_cursor") if answer.ok else None
    this_queue = [("view", "incidents")]
    return user.page(
        "queues.html",
        status=200 if answer.ok else answer.status,
        view="incidents",
        views=QUEUES,
        searches=SEARCHES,
        by="acceptance_no",
        q="",
        rows=[],
        incidents=answer.body.get("items", []) if answer.ok else [],
        error=None if answer.ok else answer.detail,
        now=clock_of(user.request)().isoformat(),
        first_query=this_queue if cursor else None,
        next_query=[*this_queue, ("cursor", next_cursor)] if next_cursor else None,
    )


@router.get("/incidents/{incident_id}")
async def incident_page(user: Viewer, incident_id: UUID) -> Response:
    """A major incident: its window, the threshold it was declared under, and each of its
    complaints (what the incident did with it, where it is now), linked to its page."""
    answer = await user.api.get(f"/incidents/{incident_id}", service=Service.ESCALATION)
    return user.page("incident.html", i=user.ok(answer).body)


# -- a complaint --------------------------------------------------------------------------------


def limit_bar(deadline: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A limit with how far along its time it is (0 to 1000), now or at `as_of`."""
    start = datetime.fromisoformat(deadline["starts_at"])
    due = datetime.fromisoformat(deadline["due_at"])
    span = max((due - start).total_seconds(), 1.0)
    elapsed = (now - start).total_seconds()
    return {**deadline, "progress": int(max(0.0, min(1.0, elapsed / span)) * 1000)}


@dataclass(frozen=True)
class Refused:
    """A command the API did not take, for its form to show again with the answer."""

    form_id: str
    values: dict[str, str]
    status: int
    message: str
    errors: dict[str, str]


@router.get("/complaints/{complaint_id}")
async def complaint_page(
    user: Viewer,
    complaint_id: UUID,
    as_of: Annotated[str | None, Query(max_length=64)] = None,
    done: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    return await complaint_response(user, complaint_id, as_of=as_of, done=done)


async def complaint_response(
    user: Signed,
    complaint_id: UUID,
    *,
    as_of: str | None = None,
    done: str | None = None,
    refused: Refused | None = None,
) -> Response:
    """A complaint's page: as it stands (with the commands the user may give now), or as it
    stood at `as_of` (nothing to give then)."""
    as_of = (as_of or "").strip() or None
    api = user.api
    complaint = user.ok(
        await api.get(f"/complaints/{complaint_id}", [("as_of", as_of)] if as_of else None)
    )
    history = await api.get(f"/complaints/{complaint_id}/history")
    events = history.body.get("events", []) if history.ok else []
    shown_at = datetime.fromisoformat(as_of) if as_of else clock_of(user.request)()
    view = complaint.body
    return user.page(
        "complaint.html",
        status=refused.status if refused else 200,
        c=view,
        limits=[limit_bar(d, shown_at) for d in view.get("deadlines", [])],
        events=events,
        as_of=as_of,
        shown_at=shown_at,
        later=lambda event: datetime.fromisoformat(event["at"]) > shown_at,
        offers=[] if as_of else await commands.offers(api, view, user.principal),
        done=commands.known(done or ""),
        refused=refused,
        # a new key for every form shown: a double submit gives the command once
        idempotency_key=str(uuid.uuid4()),
    )


@router.post("/complaints/{complaint_id}/commands/{command}")
async def give_command(
    request: Request, user: Sender, complaint_id: UUID, command: str
) -> Response:
    """A command's form, sent to the service that serves it with the version the user saw
    (`If-Match`): a change by someone else meanwhile is a 412 said as a sentence, not lost."""
    t = user.t
    chosen = commands.known(command)
    if chosen is None:
        return user.error(404, t("command.unknown"))
    form = await read_form(request)
    task = commands.task_id(form.get("notification", ""))
    version = form.get("version", "")
    if task is None or not re.fullmatch(r"[0-9]{1,18}", version):
        return user.error(400, t("command.bad_form"))
    offer = await commands.offer(user.api, chosen, task)
    form_id = offer.form_id
    if offer.unavailable:
        message = t("command.unreachable").format(service=offer.unavailable)
        return await complaint_response(
            user, complaint_id, refused=Refused(form_id, form, 503, message, {})
        )
    headers = {"Idempotency-Key": idempotency_key(form), "If-Match": f'"{version}"'}
    answer = await user.api.post(
        offer.service,
        offer.target(complaint_id),
        commands.request_body(offer.fields, form, local_times(request)),
        headers,
    )
    if user.current(answer).ok:
        page = f"{_home(request)}complaints/{complaint_id}?done={chosen.value}"
        return RedirectResponse(page, status_code=303)
    placed, said = commands.refusal(offer.fields, answer, t)
    message = {
        412: t("command.stale"),
        409: t("command.conflict"),
    }.get(answer.status, "")
    sentence = " ".join(part for part in (message, said) if part)
    return await complaint_response(
        user, complaint_id, refused=Refused(form_id, form, answer.status, sentence, placed)
    )


# -- a new complaint ----------------------------------------------------------------------------


def local_time(value: str, tz: ZoneInfo) -> str:
    """A time typed without an offset (the browser's date-time field) is the staff's local
    time (in `tz`); anything else goes to the API as typed, for it to judge."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return parsed.replace(tzinfo=tz).isoformat() if parsed.tzinfo is None else value


def local_times(request: Request) -> Callable[[str], str]:
    """`local_time` in the console's time zone, for `commands.request_body`."""
    return partial(local_time, tz=display_tz(request))


async def acceptance_fields(api: Api) -> list[commands.Field] | None:
    """The acceptance form: the body of POST /complaints as intake's OpenAPI document declares
    it, each input by its name there (a 422's `errors[].field`) and labelled `field.<name>`;
    None when intake cannot be reached."""
    return await commands.body_fields(api, ACCEPT, within="")


def new_form(
    user: Signed,
    fields: list[commands.Field],
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    return user.page(
        "new.html",
        status=status,
        fields=fields,
        values=values or {"channel": Channel.HOTLINE.value},
        errors=errors or {},
        error=error,
        # a new key for every form shown: a double submit makes one complaint
        idempotency_key=str(uuid.uuid4()),
    )


@router.get("/new")
async def new_complaint(user: Viewer) -> Response:
    user.require(ACCEPT_ROLES)
    fields = await acceptance_fields(user.api)
    if fields is None:
        return user.unreachable(ACCEPT[0])
    return new_form(user, fields)


@router.post("/new")
async def accept_complaint(request: Request, user: Sender) -> Response:
    fields = await acceptance_fields(user.api)
    if fields is None:
        return user.unreachable(ACCEPT[0])
    form = await read_form(request)
    service, path = ACCEPT
    body = commands.request_body(fields, form, local_times(request))
    answer = await user.api.post(service, path, body, {"Idempotency-Key": idempotency_key(form)})
    if not user.current(answer).ok:
        placed, rest = commands.errors_by_field(fields, answer.field_errors())
        return new_form(
            user,
            fields,
            values=form,
            errors=placed,
            error=" ".join(rest) if placed else " ".join([answer.detail, *rest]),
            status=answer.status,
        )
    return user.page("accepted.html", status=201, c=answer.body)


def idempotency_key(form: dict[str, str]) -> str:
    """The key the form was shown with (a double submit acts once), or a new one if the form
    holds none the API would take."""
    key = form.get("idempotency_key", "")
    return key if re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key) else str(uuid.uuid4())


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    """An HTML form's fields (application/x-www-form-urlencoded), every value of each name."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return parse_qsl(body, keep_blank_values=True)


async def read_form(request: Request) -> dict[str, str]:
    """An HTML form's fields, the last of each name."""
    return dict(await form_pairs(request))
