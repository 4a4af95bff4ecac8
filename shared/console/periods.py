"""A period of whole days as a page's query names it (`from`, `to`: YYYY-MM-DD, both included),
for the pages that read one (the dashboard, the audit page): judged here, once, so a bad one is
a page that says why rather than the API's refusal or a date overflowing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Query, Request

from shared.console.i18n import Translator
from shared.console.pages import PageAnswer, Viewer, display_tz, translator
from shared.http.state import clock_of

#: The days a period may name: the API's times are in the years 1990 to 2099 (its Timestamp,
#: shared/http/fields.py), and a period's end is the start of the day after its last.
FIRST_DAY = date(1990, 1, 1)
LAST_DAY = date(2099, 12, 30)

#: The period's days as typed: read as strings, so a bad one is judged by `asked` (a page).
FirstDay = Annotated[str | None, Query(alias="from")]
LastDay = Annotated[str | None, Query(alias="to")]


class BadPeriod(ValueError):
    """A period the page cannot ask for: the status of its page and the sentence it shows."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
        """The start of the day after the last (within the API's years: see LAST_DAY)."""
        return datetime.combine(self.last + timedelta(days=1), time(), self.tz)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def params(self) -> list[tuple[str, str]]:
        """The API's `from` and `to`: [start of the first day, start of the next)."""
        return [("from", self.start.isoformat()), ("to", self.end.isoformat())]

    def query(self) -> str:
        """The console's own query for this period."""
        return f"from={self.first.isoformat()}&to={self.last.isoformat()}"

    def weeks(self) -> list[Period]:
        """Seven days each from the first; the last week ends with the period."""
        found, day = [], self.first
        while day <= self.last:
            found.append(Period(day, min(day + timedelta(days=6), self.last), self.tz))
            day += timedelta(days=7)
        return found


def asked(
    request: Request,
    start: str | None,
    end: str | None,
    *,
    default_days: int,
    max_days: int | None = None,
) -> Period:
    """The period the query names, by default the `default_days` up to today. A parameter
    given twice: BadPeriod 400; a date that is not one, outside the API's years, `to` before
    `from`, longer than `max_days`: BadPeriod 422. (Other parameters are ignored, as by every
    page.)"""
    t = translator(request)
    keys = [key for key, _ in request.query_params.multi_items()]
    repeated = sorted({k for k in keys if k in ("from", "to") and keys.count(k) > 1})
    if repeated:
        raise BadPeriod(400, t("period.repeated").format(names=", ".join(repeated)))
    days = {name: _day(name, typed, t) for name, typed in (("from", start), ("to", end))}
    tz = display_tz(request)
    today = clock_of(request)().astimezone(tz).date()
    last = days["to"] or min(today, LAST_DAY)
    first = days["from"] or max(FIRST_DAY, last - timedelta(days=default_days - 1))
    if last < first:
        raise BadPeriod(422, t("period.to_before_from"))
    period = Period(first, last, tz)
    if max_days is not None and period.days > max_days:
        raise BadPeriod(422, t("period.too_long").format(days=max_days))
    return period


def period_asked(
    *, default_days: int, max_days: int | None = None
) -> Callable[..., Awaitable[Period]]:
    """A page's period as a dependency (`asked`), judged once the user is signed in; a bad
    one is its page (its status, its sentence)."""

    async def dependency(
        request: Request, user: Viewer, start: FirstDay = None, end: LastDay = None
    ) -> Period:
        try:
            return asked(request, start, end, default_days=default_days, max_days=max_days)
        except BadPeriod as exc:
            raise PageAnswer(user.error(exc.status, exc.message)) from exc

    return dependency


def _day(name: str, typed: str | None, t: Translator) -> date | None:
    value = (typed or "").strip()
    if not value:
        return None
    try:
        if len(value) != 10:  # YYYY-MM-DD, nothing else
            raise ValueError(value)
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise BadPeriod(422, t("period.bad_date").format(name=name, value=value[:40])) from exc
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadPeriod(
            422,
            t("period.out_of_range").format(
                name=name, value=value, first=FIRST_DAY.isoformat(), last=LAST_DAY.isoformat()
            ),
        )
    return day
