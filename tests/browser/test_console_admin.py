"""The admin page in headless Chromium against a real intake process: sign in with an admin's
token, subscribe the local gateway (`make run`'s webhook receiver) to accepted complaints, see
the secret once, watch a delivery arrive on the subscription's page, delete it; erase a
customer after typing the id again. Nothing is asked of another host."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.harness import Screenshot
from tests.conftest import intake_body
from tests.e2e.processes import gateway, service, token

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture(scope="module")
def receiver(sqlite_store_env: dict[str, str]) -> Iterator[str]:
    with gateway(sqlite_store_env) as url:
        yield url


@pytest.fixture(scope="module")
def intake(sqlite_store_env: dict[str, str]) -> Iterator[str]:
    # a receiver on this machine (the gateway) is allowed, as in development
    env = {**sqlite_store_env, "COMPLAINTS_WEBHOOK_LOCAL_URLS": "true"}
    with service("intake", env) as url:
        yield url


def test_an_admin_subscribes_the_gateway_and_erases_a_customer(
    intake: str,
    receiver: str,
    sqlite_store_env: dict[str, str],
    page: Page,
    screenshot: Screenshot,
) -> None:
    env = sqlite_store_env
    page.goto(f"{intake}/console/")
    page.locator("#token-signin textarea[name=token]").fill(token(env, "admin", "ops-1"))
    page.locator("#token-signin button[type=submit]").click()
    page.get_by_role("link", name="系统管理").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("系统管理")
    expect(page.locator("#no-subscriptions")).to_be_visible()

    hooks = f"{receiver}/webhooks"
    page.locator("#subscribe-url").fill(hooks)
    page.locator('#subscribe input[name=event_types][value="Complaint.Accepted"]').check()
    page.locator("#subscribe button[type=submit]").click()
    expect(page.locator("#secret-value")).to_contain_text("whsec_")
    expect(page.locator("#secret-once")).to_be_visible()
    screenshot(page, "secret")

    page.get_by_role("link", name="返回系统管理").click()
    row = page.locator("tr.subscription")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(hooks)
    screenshot(page, "admin")

    agent = {"Authorization": f"Bearer {token(env, 'agent', 'agent-007')}"}
    body = intake_body(customer={"id": "cust-b1", "name": "王芳", "phone": "13700001234"})
    accepted = httpx.post(f"{intake}/complaints", json=body, headers=agent)
    assert accepted.status_code == 201, accepted.text

    row.get_by_role("link").click()
    expect(page.locator("#secret-value")).to_have_count(0)  # a second look: no secret
    for _ in range(60):  # the projector enqueues it, intake's sender sends it
        if page.locator("tr.delivery.status-delivered").count():
            break
        time.sleep(0.5)
        page.reload()
    expect(page.locator("tr.delivery.status-delivered")).to_contain_text("Complaint.Accepted")
    screenshot(page, "subscription")
    assert len(httpx.get(f"{receiver}/webhooks").json()) == 1

    page.locator("#unsubscribe button[type=submit]").click()
    expect(page.locator("#deleted")).to_be_visible()
    expect(page.locator("#no-subscriptions")).to_be_visible()

    page.locator("#erase-customer_id").fill("cust-b1")
    page.locator("#erase button[type=submit]").click()
    expect(page.locator("#irreversible")).to_be_visible()
    page.locator("#erase-confirmation").fill("cust-b2")
    page.locator("#erase-confirmed button[type=submit]").click()
    expect(page.locator("#erase-confirmation-error")).to_be_visible()
    page.locator("#erase-confirmation").fill("cust-b1")
    screenshot(page, "erasure")
    page.locator("#erase-confirmed button[type=submit]").click()
    expect(page.locator("#keys-destroyed")).to_have_text("1")
    screenshot(page, "erased")
    view = httpx.get(f"{intake}/complaints/{accepted.json()['id']}", headers=agent).json()
    assert view["customer"]["name"] == "[erased]"
