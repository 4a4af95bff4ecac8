"""The regulator's audit page in headless Chromium against a real service process: sign in with
a regulator's token, open the audit page, see the export verified and the key's fingerprint as
the API gives it, download the export (NDJSON holding the complaint's events), and open the
complaint's hash-linked history from it; nothing is asked of another host."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.harness import HostGuard, Screenshot
from tests.conftest import intake_body
from tests.e2e.processes import service, token

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture(scope="module")
def intake(sqlite_store_env: dict[str, str]) -> Iterator[str]:
    with service("intake", sqlite_store_env) as url:
        yield url


def bearer(env: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(env, role, f'{role}-1')}"}


def test_a_regulator_downloads_an_export_and_sees_it_verified(
    intake: str,
    sqlite_store_env: dict[str, str],
    page: Page,
    blocked: HostGuard,
    screenshot: Screenshot,
    tmp_path: Path,
) -> None:
    env = sqlite_store_env
    created = httpx.post(
        f"{intake}/complaints", json=intake_body(), headers=bearer(env, "agent")
    ).json()
    analyst = bearer(env, "analyst")
    for _ in range(100):  # a checkpoint once the chain holds the complaint
        signed = httpx.post(f"{intake}/audit/checkpoints", headers=analyst)
        if signed.status_code == 201 and signed.json()["position"] >= created["position"]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the audit chain did not reach the complaint")
    regulator = bearer(env, "regulator")
    key = httpx.get(f"{intake}/audit/public-key", headers=regulator).json()

    page.goto(f"{intake}/console/")
    page.locator("#token-signin textarea[name=token]").fill(
        regulator["Authorization"].removeprefix("Bearer ")
    )
    page.locator("#token-signin button[type=submit]").click()
    page.get_by_role("link", name="审计").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("审计")
    expect(page.locator("#verdict")).to_have_text("验证通过")
    expect(page.locator("#verifier")).to_contain_text("valid: ")
    expect(page.locator("#fingerprint")).to_have_text(key["fingerprint"])
    complaint_link = page.locator(f'a[href="/console/complaints/{created["id"]}"]')
    expect(complaint_link).to_be_visible()
    screenshot(page, "audit")

    with page.expect_download() as info:
        page.locator("#download-export").click()
    download = info.value
    name = download.suggested_filename
    assert name.startswith("audit-export-") and name.endswith(".ndjson")
    expect(page.locator("#command")).to_contain_text(
        f"shared/audit/verify.py {name} checkpoints.json --key operator.pem"
    )
    saved = tmp_path / name
    download.save_as(saved)
    lines = [json.loads(line) for line in saved.read_bytes().splitlines()]
    assert lines and "trailer" in lines[-1]
    assert lines[-1]["trailer"]["complete"] is True
    events = [line for line in lines[:-1] if line["complaint_id"] == created["id"]]
    assert events and events[0]["type"].endswith("Accepted")
    assert all(len(line["hash"]) == 64 for line in events)

    complaint_link.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(created["acceptance_no"])
    expect(page.locator('table.timeline td[title="Accepted"]')).to_have_text("受理")
    screenshot(page, "audit-complaint")
    assert blocked.attempts == []
