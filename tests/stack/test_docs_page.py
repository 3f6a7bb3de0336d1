"""``/docs`` in a real browser (headless Chromium), through the edge over HTTP and over HTTPS.

The page loads with no failed request and no request to any host but the stack's, lists every
operation of the document, and "Try it out" on ``GET /items`` answers 200 with the items once a
key is entered in the page's "Authorize" dialog, 401 without one; with a write key, an item is
created, read, changed and deleted from the page. Screenshots are kept in test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

ROOT_ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "..", "test-artifacts")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(params=["http", "https"])
def base_url(request, stack) -> str:
    return stack.api_tls_url if request.param == "https" else stack.api_url


@pytest.fixture
def page(browser, base_url):
    # The self-signed certificate of the test stack: the browser cannot know its issuer.
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.seen, page.failed = [], []
    page.on("request", lambda r: page.seen.append(r.url))
    page.on("requestfailed", lambda r: page.failed.append(f"{r.url}: {r.failure}"))
    yield page
    context.close()


def shoot(page, name: str) -> None:
    os.makedirs(ROOT_ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ROOT_ARTIFACTS, name), full_page=True)


def open_docs(page, base_url: str) -> None:
    """Load /docs. Chromium abandons a load when the host's interfaces change (Docker creating or
    removing a network does that: ERR_NETWORK_CHANGED, its error page or a reload replacing the load);
    such a load is tried again, twice at most."""
    from playwright.sync_api import Error

    for attempt in range(3):
        try:
            page.goto(base_url + "/docs")
            # Swagger UI parses 1.6 MB of JavaScript first: slow on a busy machine.
            page.wait_for_selector(".opblock", timeout=90_000)
            return
        except Error as e:
            network_changed = any(sign in str(e) for sign in (
                "ERR_NETWORK_CHANGED", "chrome-error://", "interrupted by another navigation"))
            if not network_changed or attempt == 2:
                shoot(page, f"docs-failure-{urlsplit(base_url).scheme}.png")
                raise


def try_operation(page, summary: str, params: dict | None = None, body: str | None = None) -> tuple[str, str]:
    """Expand the operation with this summary, press "Try it out", fill its parameters and
    body, press "Execute": the status and the response text the page shows."""
    from playwright.sync_api import expect

    operation = page.locator(".opblock").filter(
        has=page.locator(".opblock-summary-description", has_text=summary))
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    for name, value in (params or {}).items():
        operation.locator(f"input[placeholder='{name}']").fill(str(value))
    if body is not None:
        operation.locator("textarea.body-param__text").fill(body)
    operation.locator(".execute").click()
    answer = operation.locator(".live-responses-table .response").first
    expect(answer.locator(".response-col_status")).not_to_be_empty()
    return (answer.locator(".response-col_status").inner_text().strip(),
            answer.locator(".response-col_description").inner_text())


def authorize(page, key: str) -> None:
    """Enter `key` in the page's "Authorize" dialog, as a user pastes what `make key` printed."""
    page.locator(".auth-wrapper .btn.authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.locator("input").fill(key)
    dialog.locator(".auth-btn-wrapper .btn.authorize").click()
    dialog.locator(".auth-btn-wrapper .btn-done").click()


def test_the_page_loads_everything_from_the_stack_and_lists_every_operation(stack, page, base_url):
    open_docs(page, base_url)
    document = requests.get(stack.api_url + "/openapi.json", timeout=10).json()
    operations = sum(len(methods) for methods in document["paths"].values())
    assert page.locator(".opblock").count() == operations
    shoot(page, f"docs-{urlsplit(base_url).scheme}.png")
    assert not page.failed, page.failed
    hosts = {urlsplit(url).netloc for url in page.seen}
    assert hosts == {urlsplit(base_url).netloc}, hosts


def test_try_it_out_lists_items_with_a_key_from_the_authorize_dialog(stack, page, base_url):
    name = f"docs-page-{urlsplit(base_url).scheme}-{uuid.uuid4().hex[:8]}"
    requests.post(stack.api_url + "/items", json={"name": name, "price": 3}, timeout=10,
                  headers={"Authorization": f"Bearer {stack.api_key}"}).raise_for_status()
    open_docs(page, base_url)
    authorize(page, stack.read_key)
    status, text = try_operation(page, "List items", {"name_contains": name})
    assert status == "200" and name in text
    shoot(page, f"docs-try-it-out-{urlsplit(base_url).scheme}.png")


def test_try_it_out_without_a_key_shows_the_401_problem(page, base_url):
    open_docs(page, base_url)
    status, text = try_operation(page, "List items")
    assert status == "401" and "Unauthorized" in text


def test_an_item_is_created_read_changed_and_deleted_from_the_page(stack, page, base_url):
    open_docs(page, base_url)
    authorize(page, stack.api_key)
    name = f"crud-{urlsplit(base_url).scheme}-{uuid.uuid4().hex[:8]}"
    status, text = try_operation(page, "Create an item", body=json.dumps({"name": name, "price": 4.5}))
    assert status == "201", text
    item_id = re.search(r'"id": (\d+)', text).group(1)
    assert try_operation(page, "Get an item", {"item_id": item_id})[0] == "200"
    status, text = try_operation(page, "Change some fields", {"item_id": item_id}, '{"quantity": 9}')
    assert status == "200" and '"quantity": 9' in text
    assert try_operation(page, "Delete an item", {"item_id": item_id})[0] == "204"
    shoot(page, f"docs-crud-{urlsplit(base_url).scheme}.png")
    gone = requests.get(f"{stack.api_url}/items/{item_id}", timeout=10,
                        headers={"Authorization": f"Bearer {stack.read_key}"})
    assert gone.status_code == 404
