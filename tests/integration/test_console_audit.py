"""The regulator's audit page (`/console/audit`) in-process: the key's fingerprint as the API
gives it, the export, checkpoints and key downloaded through the console (its cookie session
carries no bearer header), the service's own verification of the export, the offline command
naming the downloaded files (and passing when run), links to each complaint's hash-linked
history; a role the API refuses gets no link and the API's 403; bad periods are plain pages."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from asyncio.subprocess import PIPE, STDOUT
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shared.console import audit
from shared.domain.clock import FixedClock
from shared.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_console import accept, console_client, sign_in

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def web(settings: Settings, clock: FixedClock) -> AsyncIterator[httpx.AsyncClient]:
    production = settings.model_copy(update={"environment": "production"})
    async with console_client(production, clock) as client:
        yield client


def bearer(token: TokenFactory, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role)}"}


async def signed_head(web: httpx.AsyncClient, token: TokenFactory) -> int:
    """Wait for the chain to reach the store's head and sign it; its position."""
    head: int = (await web.get("/ready")).json()["position"]
    for _ in range(200):
        signed = await web.post("/audit/checkpoints", headers=bearer(token, "analyst"))
        if signed.status_code == 201 and signed.json()["position"] == head:
            return head
        await asyncio.sleep(0.05)
    pytest.fail("the audit chain did not catch up")


async def test_a_regulator_downloads_the_export_and_sees_it_verified(
    web: httpx.AsyncClient, token: TokenFactory, tmp_path: Path
) -> None:
    created = await accept(web, token)
    head = await signed_head(web, token)
    await sign_in(web, token("regulator", "reg-1"))

    home = await web.get("/console/")
    assert 'href="/console/audit"' in home.text
    page = await web.get("/console/audit")
    assert page.status_code == 200, page.text
    api_key = (await web.get("/audit/public-key", headers=bearer(token, "regulator"))).json()
    assert f'id="fingerprint">{api_key["fingerprint"]}</code>' in page.text
    assert re.search(r'class="verdict valid" id="verdict"[^>]*>验证通过<', page.text)
    assert "valid: " in page.text and "complete: every event committed" in page.text
    assert f'href="/console/complaints/{created["id"]}"' in page.text
    assert f"<td>{head}</td>" in page.text  # the checkpoint the export covers

    # The offline command names the files the downloads are saved under.
    command = re.search(r'id="command"><code>([^<]+)</code>', page.text)
    assert command is not None
    words = command.group(1).split()
    assert words[:2] == [".venv/bin/python", "shared/audit/verify.py"]
    export_link = re.search(r'href="(/console/audit/export\?[^"]+)" download="([^"]+)"', page.text)
    assert export_link is not None
    export_name = export_link.group(2)
    assert words[2:] == [export_name, "checkpoints.json", "--key", "operator.pem"]

    export = await web.get(export_link.group(1).replace("&amp;", "&"))
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert f'filename="{export_name}"' in export.headers["content-disposition"]
    lines = [json.loads(line) for line in export.content.splitlines()]
    assert {line["complaint_id"] for line in lines[:-1]} == {created["id"]}
    assert lines[-1]["trailer"]["complete"] is True

    checkpoints = await web.get("/console/audit/checkpoints")
    assert checkpoints.status_code == 200
    assert 'filename="checkpoints.json"' in checkpoints.headers["content-disposition"]
    assert checkpoints.json()["fingerprint"] == api_key["fingerprint"]
    key = await web.get("/console/audit/public-key")
    assert 'filename="operator.pem"' in key.headers["content-disposition"]
    assert key.text == api_key["public_key"]

    # Run it, as shown, on the downloaded files (the project's verifier, the venv's Python).
    (tmp_path / export_name).write_bytes(export.content)
    (tmp_path / "checkpoints.json").write_bytes(checkpoints.content)
    (tmp_path / "operator.pem").write_bytes(key.content)
    verifier = str(ROOT / words[1])
    ran = await asyncio.create_subprocess_exec(
        sys.executable, verifier, *words[2:], cwd=tmp_path, stdout=PIPE, stderr=STDOUT
    )
    said = (await ran.communicate())[0].decode()
    assert ran.returncode == 0, said
    assert "valid: " in said

    english = await web.get("/console/language/en", params={"next": "/console/audit"})
    assert english.status_code == 303
    assert ">Verified<" in (await web.get("/console/audit")).text


async def test_an_agent_gets_no_link_and_the_apis_403(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(web, token("agent"))
    assert 'href="/console/audit"' not in (await web.get("/console/")).text
    for path in (
        "/console/audit",
        "/console/audit/export",
        "/console/audit/checkpoints",
        "/console/audit/public-key",
    ):
        refused = await web.get(path)
        assert refused.status_code == 403, path
        assert refused.headers["content-type"].startswith("text/html")
        assert 'class="error"' in refused.text
        assert "content-disposition" not in refused.headers


async def test_no_session_signs_in_first(web: httpx.AsyncClient) -> None:
    for path in ("/console/audit", "/console/audit/export"):
        page = await web.get(path)
        assert page.status_code == 401
        assert 'name="token"' in page.text


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"from": "yesterday"}, "from 不是日期"),
        ({"to": "2026-13-01"}, "to 不是日期"),
        ({"from": "20261101"}, "from 不是日期"),
        ({"from": "2026-11-10", "to": "2026-11-01"}, "截止日期不能早于起始日期"),
        # the API's years, the dashboard's bound too (shared/console/periods.py)
        ({"to": "9999-12-31"}, "to 超出可查询的范围(1990-01-01 至 2099-12-30)"),
        ({"to": "0001-01-01"}, "to 超出可查询的范围"),
        ({"from": "1989-12-31"}, "from 超出可查询的范围"),
    ],
)
async def test_a_bad_period_is_a_plain_page_not_a_500(
    web: httpx.AsyncClient, token: TokenFactory, params: dict[str, str], says: str
) -> None:
    await sign_in(web, token("regulator"))
    for path in ("/console/audit", "/console/audit/export"):
        page = await web.get(path, params=params)
        assert page.status_code == 422, (path, page.text)
        assert says in page.text
    twice = await web.get("/console/audit?from=2026-11-01&from=2026-11-02")
    assert twice.status_code == 400 and "查询参数重复" in twice.text
    # a page is not an API route: what it does not read it ignores, as web pages do
    unknown = await web.get("/console/audit", params={"since": "2026-11-01", "utm": "mail"})
    assert unknown.status_code == 200 and 'type="date"' in unknown.text


async def test_a_period_the_api_refuses_shows_its_reason(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await sign_in(web, token("regulator"))
    page = await web.get("/console/audit", params={"from": "2020-01-01", "to": "2026-11-01"})
    assert page.status_code == 422
    assert "366" in page.text and 'class="error"' in page.text


async def test_another_key_or_an_altered_line_is_shown_invalid(
    web: httpx.AsyncClient, token: TokenFactory
) -> None:
    await accept(web, token)
    await signed_head(web, token)
    auth = bearer(token, "regulator")
    export = (await web.get("/audit/export", headers=auth)).content
    checkpoints = (await web.get("/audit/checkpoints", headers=auth)).json()
    pem = checkpoints["public_key"]
    assert audit.check_export(audit.Export.of(export), checkpoints, pem).valid

    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    forged = audit.check_export(audit.Export.of(export), checkpoints, other)
    assert forged.verified and not forged.valid
    assert "not signed by the pinned key" in forged.message

    altered = export.replace(b'"Accepted"', b'"Refused"', 1)
    assert altered != export
    found = audit.check_export(audit.Export.of(altered), checkpoints, pem)
    assert not found.valid and "line 1" in found.message


async def test_a_period_too_long_to_verify_here_points_to_the_offline_command(
    web: httpx.AsyncClient, token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    await accept(web, token)
    await signed_head(web, token)
    monkeypatch.setattr(audit, "VERIFY_MAX_EVENTS", 0)
    await sign_in(web, token("analyst"))
    page = await web.get("/console/audit")
    assert page.status_code == 200
    assert 'class="verdict skipped"' in page.text
    events = re.search(r'id="events">(\d+)<', page.text)
    assert events is not None and int(events.group(1)) > 0
    assert f"该期间共有 {events.group(1)} 个事件" in page.text
    assert 'id="command"' in page.text


async def test_the_export_streams_through_and_its_upstream_is_closed(
    web: httpx.AsyncClient, token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The download is passed on as it comes (no length known beforehand), through
    `client.stream`; the API's response is closed once it has been read."""
    await accept(web, token)
    closed: list[str] = []
    real_close = httpx.Response.aclose

    async def recorded(self: httpx.Response) -> None:
        if self.request.url.path.startswith("/audit/"):
            closed.append(self.request.url.path)
        await real_close(self)

    monkeypatch.setattr(httpx.Response, "aclose", recorded)
    await sign_in(web, token("regulator"))
    direct = await web.get("/audit/export", headers=bearer(token, "regulator"))
    closed.clear()
    export = await web.get("/console/audit/export")
    assert export.status_code == 200
    assert "content-length" not in export.headers  # streamed, not held and sent whole
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert export.content.splitlines()[:-1] == direct.content.splitlines()[:-1]
    # masked for the regulator as the API masks it: the customer's data is not in the file
    escaped = json.dumps("张伟").strip('"').encode()
    for personal in (b"13812341234", b"zhang.wei@example.cn", "张伟".encode(), escaped):
        assert personal not in export.content, personal
    assert "/audit/export" in closed
    closed.clear()
    checkpoints = await web.get("/console/audit/checkpoints")
    assert checkpoints.status_code == 200 and "content-length" not in checkpoints.headers
    assert closed and set(closed) == {"/audit/checkpoints"}


def test_the_export_is_read_line_by_line_and_kept_only_up_to_the_cap() -> None:
    lines = [json.dumps({"position": n, "complaint_id": "c"}).encode() + b"\n" for n in range(9)]
    lines.append(b'{"trailer": {"last_position": 8, "complete": true}}\n')
    body = b"".join(lines)
    for size in (1, 7, len(body)):  # chunks cutting lines anywhere
        export = audit.Export(keep=len(lines))
        for at in range(0, len(body), size):
            export.feed(body[at : at + size])
        export.end()
        assert export.lines == lines and export.count == len(lines)
    capped = audit.Export.of(body, keep=4)
    assert capped.count == 10 and capped.last == lines[-1]
    assert len(capped.lines) <= 4 and capped.lines[0] == lines[0]
    check = audit.check_export(capped, {"checkpoints": []}, "unused: not verified")
    assert (check.events, check.verified, check.last_position) == (9, False, 8)
    unended = audit.Export.of(body.rstrip(b"\n"))
    assert unended.count == 10 and unended.last == lines[-1].rstrip(b"\n")
