"""The regulator's audit page (`/console/audit`): pick a period; download its export, the signed
checkpoints and the public key, each fetched from the JSON API with the user's token; see the
key's fingerprint, the service's own verification of the export (by the standalone verifier,
`shared/audit/verify.py`, the very code a regulator runs offline) and the exact command to run
it offline; open the history of any complaint the export holds. Who may read any of it is the
API's answer (regulator, analyst, admin): a 403 is shown as the API says it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

# The verifier is pure (the standard library and `cryptography`, nothing of the platform: its
# own import contract); the console runs it as the regulator would (pyproject.toml allows
# exactly this module).
from shared.audit.verify import verify
from shared.console import session
from shared.console.client import Answer, Api
from shared.console.i18n import Translator, language
from shared.console.pages import (
    SECURITY_HEADERS,
    display_tz,
    render,
    signed_out,
    signin_page,
)
from shared.http.auth import Principal
from shared.http.state import clock_of

router = APIRouter(prefix=session.PREFIX, include_in_schema=False)

#: The period's days as typed (YYYY-MM-DD), judged by `period_of` so a bad one is a page.
From = Annotated[str | None, Query(alias="from")]
To = Annotated[str | None, Query(alias="to")]

#: The most events the page verifies itself (CPU work, in a worker thread); a longer period is
#: counted and left to the offline command.
VERIFY_MAX_EVENTS = 20_000
#: How many complaints and checkpoints the page lists (the downloads hold them all).
LIST_MAX = 200
#: The period shown when none is asked for: the last week, today included.
DEFAULT_DAYS = 7
#: The years a period may name (the store holds none before; none after overflows a date).
YEARS = (1970, 9000)
#: The names the downloads are saved under, and the offline check as the README runs it.
CHECKPOINTS_FILE = "checkpoints.json"
KEY_FILE = "operator.pem"
COMMAND = ".venv/bin/python shared/audit/verify.py {export} {checkpoints} --key {key}"


def _t(request: Request) -> Translator:
    return Translator(language(request.cookies.get(session.LANGUAGE_COOKIE)))


class BadPeriod(ValueError):
    """A period the page cannot ask for; the message says why, for the page to show."""


@dataclass(frozen=True)
class Period:
    """Whole days in the console's time zone, `first` to `last` included."""

    first: date
    last: date
    #: The console's time zone (the policy's).
    tz: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), self.tz)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), self.tz)

    def api_params(self) -> list[tuple[str, str]]:
        """GET /audit/export's `from` and `to`: [start of the first day, start of the next)."""
        return [("from", self.start.isoformat()), ("to", self.end.isoformat())]

    def query(self) -> str:
        """The console's own query for this period."""
        return f"from={self.first.isoformat()}&to={self.last.isoformat()}"

    @property
    def export_file(self) -> str:
        return f"audit-export-{self.first.isoformat()}_{self.last.isoformat()}.ndjson"


def period_of(
    start: str | None,
    end: str | None,
    keys: list[str],
    today: date,
    t: Translator,
    tz: ZoneInfo,
) -> Period:
    """The period a query names (`from`, `to`: dates, YYYY-MM-DD); the last week by default.
    Repeated parameters, dates that are not dates, `to` before `from`: BadPeriod. (Other
    parameters are ignored, as by every page.)"""
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise BadPeriod(t("audit.repeated_params").format(names=", ".join(repeated)))
    days: dict[str, date] = {}
    for name, typed in (("from", start), ("to", end)):
        value = (typed or "").strip()
        if not value:
            continue
        try:
            days[name] = date.fromisoformat(value)
            if len(value) != 10 or not YEARS[0] <= days[name].year <= YEARS[1]:
                raise ValueError(value)
        except ValueError as exc:
            raise BadPeriod(t("audit.bad_date").format(name=name, value=value[:40])) from exc
    last = days.get("to", today)
    first = days.get("from", last - timedelta(days=DEFAULT_DAYS - 1))
    if last < first:
        raise BadPeriod(t("audit.to_before_from"))
    return Period(first, last, tz)


@dataclass
class Check:
    """What the page says of one export: its size and ends, and the verifier's verdict."""

    events: int = 0
    verified: bool = False  # False: more events than the page verifies (offline, then)
    valid: bool = False
    message: str = ""
    notes: tuple[str, ...] = ()
    last_position: int | None = None
    complete: bool | None = None
    covered: list[dict[str, Any]] = field(default_factory=list)  # checkpoints in its range
    complaints: list[tuple[str, int]] = field(default_factory=list)  # id, events
    more_complaints: int = 0


def _json(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def check_export(export: bytes, checkpoints: dict[str, Any], public_key: str) -> Check:
    """Verify the export against the checkpoints trusting only the service's public key
    (`verify.py`'s `verify`), and gather what the page lists. CPU work: run in a thread."""
    lines = export.splitlines(keepends=True)
    trailer = (_json(lines[-1]) or {}).get("trailer") if lines else None
    trailer = trailer if isinstance(trailer, dict) else {}
    events = len(lines) - 1 if trailer else len(lines)
    found = Check(
        events=events,
        last_position=trailer.get("last_position"),
        complete=trailer.get("complete"),
    )
    first_line = _json(lines[0]) if events else None
    first = first_line.get("position") if first_line else None
    last = found.last_position
    if isinstance(first, int) and isinstance(last, int):
        found.covered = [
            c
            for c in checkpoints.get("checkpoints", [])
            if isinstance(c, dict) and first <= c.get("position", -1) <= last
        ]
    if events > VERIFY_MAX_EVENTS:
        return found
    try:
        verdict = verify(lines, checkpoints, key=public_key)
    except ValueError as exc:  # the service's key does not read as a public key
        found.verified, found.message = True, f"invalid: {exc}"
        return found
    found.verified, found.valid = True, verdict.valid
    found.message, found.notes = verdict.message, verdict.notes
    counts: dict[str, int] = {}
    for line in lines[:events]:
        record = _json(line) or {}
        complaint = record.get("complaint_id")
        if isinstance(complaint, str):
            counts[complaint] = counts.get(complaint, 0) + 1
    found.complaints = list(counts.items())[:LIST_MAX]
    found.more_complaints = max(0, len(counts) - LIST_MAX)
    return found


def _problem(request: Request, principal: Principal, answer: Answer) -> Response:
    """The API's refusal as a page: its sentence and each bad field's."""
    message = answer.detail
    errors = answer.field_errors()
    if errors:
        message += ": " + "; ".join(f"{name}: {text}" for name, text in errors.items())
    return render(request, "error.html", status=answer.status, principal=principal, message=message)


def _download(body: bytes | str, media_type: str, filename: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


def _today(request: Request) -> date:
    return clock_of(request)().astimezone(display_tz(request)).date()


def _period(request: Request, start: str | None, end: str | None) -> Period:
    keys = [key for key, _ in request.query_params.multi_items()]
    return period_of(start, end, keys, _today(request), _t(request), display_tz(request))


@router.get("/audit")
async def audit_page(request: Request, start: From = None, end: To = None) -> Response:
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    try:
        period = _period(request, start, end)
    except BadPeriod as exc:
        return render(request, "error.html", status=400, principal=principal, message=str(exc))
    api = Api(request, token)
    key = await api.get("/audit/public-key")
    if key.status == 401:
        return signed_out(request)
    if not key.ok:
        return _problem(request, principal, key)
    checkpoints = await api.get("/audit/checkpoints")
    if not checkpoints.ok:
        return _problem(request, principal, checkpoints)
    answer, export, _ = await api.get_raw("/audit/export", period.api_params())
    if not answer.ok:
        return _problem(request, principal, answer)
    check = await run_in_threadpool(check_export, export, checkpoints.body, key.body["public_key"])
    listed = checkpoints.body.get("checkpoints", [])
    return render(
        request,
        "audit.html",
        principal=principal,
        period=period,
        key=key.body,
        check=check,
        verify_max=VERIFY_MAX_EVENTS,
        checkpoints_total=len(listed),
        covered=check.covered[-LIST_MAX:][::-1],
        latest=listed[-10:][::-1] if not check.covered else [],
        files={"export": period.export_file, "checkpoints": CHECKPOINTS_FILE, "key": KEY_FILE},
        command=COMMAND.format(
            export=period.export_file, checkpoints=CHECKPOINTS_FILE, key=KEY_FILE
        ),
    )


# -- the downloads: the API's answers as files (the cookie session has no bearer header) -------


@router.get("/audit/export")
async def download_export(request: Request, start: From = None, end: To = None) -> Response:
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    try:
        period = _period(request, start, end)
    except BadPeriod as exc:
        return render(request, "error.html", status=400, principal=principal, message=str(exc))
    answer, export, media = await Api(request, token).get_raw("/audit/export", period.api_params())
    if answer.status == 401:
        return signed_out(request)
    if not answer.ok:
        return _problem(request, principal, answer)
    return _download(export, media, period.export_file)


@router.get("/audit/checkpoints")
async def download_checkpoints(request: Request) -> Response:
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    answer, listing, media = await Api(request, token).get_raw("/audit/checkpoints")
    if answer.status == 401:
        return signed_out(request)
    if not answer.ok:
        return _problem(request, principal, answer)
    return _download(listing, media, CHECKPOINTS_FILE)


@router.get("/audit/public-key")
async def download_public_key(request: Request) -> Response:
    found = await session.signed_in(request)
    if found is None:
        return signin_page(request, status=401)
    token, principal = found
    answer = await Api(request, token).get("/audit/public-key")
    if answer.status == 401:
        return signed_out(request)
    if not answer.ok:
        return _problem(request, principal, answer)
    return _download(answer.body["public_key"], "application/x-pem-file", KEY_FILE)
