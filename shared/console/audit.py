"""The regulator's audit page (`/console/audit`): pick a period; download its export, the signed
checkpoints and the public key, each fetched from the JSON API with the user's token; see the
key's fingerprint, the service's own verification of the export (by the standalone verifier,
`shared/audit/verify.py`, the very code a regulator runs offline) and the exact command to run
it offline; open the history of any complaint the export holds. Who may read any of it is the
API's answer (regulator, analyst, admin): a 403 is shown as the API says it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

# The verifier is pure (the standard library and `cryptography`, nothing of the platform: its
# own import contract); the console runs it as the regulator would (pyproject.toml allows
# exactly this module).
from shared.audit.verify import verify
from shared.console import session
from shared.console.client import Stream
from shared.console.pages import SECURITY_HEADERS, Signed, Viewer, streamed
from shared.console.periods import Period, period_asked

router = APIRouter(prefix=session.PREFIX, include_in_schema=False)

#: The most events the page verifies itself (CPU work, in a worker thread); a longer period is
#: counted and left to the offline command.
VERIFY_MAX_EVENTS = 20_000
#: How many complaints and checkpoints the page lists (the downloads hold them all).
LIST_MAX = 200
#: The period shown when none is asked for: the last week, today included.
DEFAULT_DAYS = 7
#: The names the downloads are saved under, and the offline check as the README runs it.
CHECKPOINTS_FILE = "checkpoints.json"
KEY_FILE = "operator.pem"
COMMAND = ".venv/bin/python shared/audit/verify.py {export} {checkpoints} --key {key}"


def export_file(period: Period) -> str:
    return f"audit-export-{period.first.isoformat()}_{period.last.isoformat()}.ndjson"


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


class Export:
    """An export read line by line as it comes: how many lines, the last (the trailer), and
    the lines themselves only while they are few enough to verify here (`keep`)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.lines: list[bytes] = []
        self.count = 0
        self.last: bytes | None = None
        self._part: list[bytes] = []

    @classmethod
    def of(cls, body: bytes, keep: int | None = None) -> Export:
        export = cls(VERIFY_MAX_EVENTS + 1 if keep is None else keep)
        export.feed(body)
        return export.end()

    def feed(self, chunk: bytes) -> None:
        while chunk:
            cut = chunk.find(b"\n")
            if cut < 0:
                self._part.append(chunk)
                return
            self._part.append(chunk[: cut + 1])
            self._line(b"".join(self._part))
            self._part, chunk = [], chunk[cut + 1 :]

    def end(self) -> Export:
        if self._part:
            self._line(b"".join(self._part))
            self._part = []
        return self

    def _line(self, line: bytes) -> None:
        self.count += 1
        self.last = line
        if len(self.lines) < self.keep:
            self.lines.append(line)
        elif self.count > 1:
            self.lines = self.lines[:1]  # the first line's position only, from now on
            self.keep = 1


async def read_export(stream: Stream) -> Export:
    """The export as it streams in, keeping no more lines than the page verifies (its events
    and the trailer); over that, only counted."""
    export = Export(VERIFY_MAX_EVENTS + 1)
    async for chunk in stream.chunks():
        export.feed(chunk)
    return export.end()


def check_export(export: Export, checkpoints: dict[str, Any], public_key: str) -> Check:
    """Verify the export against the checkpoints trusting only the service's public key
    (`verify.py`'s `verify`), and gather what the page lists. CPU work: run in a thread. An
    export of more events than VERIFY_MAX_EVENTS is counted, not verified (its lines were not
    kept)."""
    trailer = (_json(export.last) or {}).get("trailer") if export.last else None
    trailer = trailer if isinstance(trailer, dict) else {}
    events = export.count - 1 if trailer else export.count
    found = Check(
        events=events,
        last_position=trailer.get("last_position"),
        complete=trailer.get("complete"),
    )
    first_line = _json(export.lines[0]) if events and export.lines else None
    first = first_line.get("position") if first_line else None
    last = found.last_position
    if isinstance(first, int) and isinstance(last, int):
        found.covered = [
            c
            for c in checkpoints.get("checkpoints", [])
            if isinstance(c, dict) and first <= c.get("position", -1) <= last
        ]
    if events > VERIFY_MAX_EVENTS or len(export.lines) != export.count:
        return found
    lines = export.lines
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


def _headers(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


#: The period the page and its export are of (`from`, `to`), by default the last week.
AuditPeriod = Annotated[Period, Depends(period_asked(default_days=DEFAULT_DAYS))]


@router.get("/audit")
async def audit_page(user: Viewer, period: AuditPeriod) -> Response:
    key = user.ok(await user.api.get("/audit/public-key"))
    checkpoints = user.ok(await user.api.get("/audit/checkpoints"))
    export = await read_export(
        user.ok_stream(await user.api.stream("/audit/export", period.params()))
    )
    check = await run_in_threadpool(check_export, export, checkpoints.body, key.body["public_key"])
    listed = checkpoints.body.get("checkpoints", [])
    return user.page(
        "audit.html",
        period=period,
        key=key.body,
        check=check,
        verify_max=VERIFY_MAX_EVENTS,
        checkpoints_total=len(listed),
        covered=check.covered[-LIST_MAX:][::-1],
        latest=listed[-10:][::-1] if not check.covered else [],
        files={"export": export_file(period), "checkpoints": CHECKPOINTS_FILE, "key": KEY_FILE},
        command=COMMAND.format(
            export=export_file(period), checkpoints=CHECKPOINTS_FILE, key=KEY_FILE
        ),
    )


# -- the downloads: the API's answers as files (the cookie session has no bearer header) -------


async def _download(
    user: Signed, path: str, params: list[tuple[str, str]] | None, filename: str
) -> Response:
    """The API's answer at `path`, streamed through as a file; its refusal as a page."""
    return streamed(user.ok_stream(await user.api.stream(path, params)), _headers(filename))


@router.get("/audit/export")
async def download_export(user: Viewer, period: AuditPeriod) -> Response:
    return await _download(user, "/audit/export", period.params(), export_file(period))


@router.get("/audit/checkpoints")
async def download_checkpoints(user: Viewer) -> Response:
    return await _download(user, "/audit/checkpoints", None, CHECKPOINTS_FILE)


@router.get("/audit/public-key")
async def download_public_key(user: Viewer) -> Response:
    answer = user.ok(await user.api.get("/audit/public-key"))
    return Response(
        answer.body["public_key"],
        media_type="application/x-pem-file",
        headers={**SECURITY_HEADERS, **_headers(KEY_FILE)},
    )
