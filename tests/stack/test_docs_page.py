"""``/docs`` in a real browser (headless Chromium), through the edge over HTTP and over HTTPS.

The page loads with no failed request and no request to any host but the stack's, lists every
operation of the document, and "Try it out" on ``GET /items`` answers 200 with the items once a
key is entered in the page's "Authorize" dialog, 401 without one. Screenshots are kept in
test-artifacts/.
"""

from __future__ import annotations

import os
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


def list_items_operation(page):
    """The "List items" operation (GET /items), expanded, with "Try it out" pressed."""
    operation = page.locator(".opblock.opblock-get").filter(has_text="List items")
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    return operation


def authorize(page, key: str) -> None:
    page.locator(".auth-wrapper .btn.authorize").click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.locator("input").fill(key)
    dialog.locator(".auth-btn-wrapper .btn.authorize").click()
    dialog.locator(".auth-btn-wrapper .btn-done").click()


def test_the_page_loads_everything_from_the_stack_and_lists_every_operation(stack, page, base_url):
    page.goto(base_url + "/docs")
    page.wait_for_selector(".opblock")
    document = requests.get(stack.api_url + "/openapi.json", timeout=10).json()
    operations = sum(len(methods) for methods in document["paths"].values())
    assert page.locator(".opblock").count() == operations
    shoot(page, f"docs-{urlsplit(base_url).scheme}.png")
    assert not page.failed, page.failed
    hosts = {urlsplit(url).netloc for url in page.seen}
    assert hosts == {urlsplit(base_url).netloc}, hosts


def test_try_it_out_lists_items_with_a_key_from_the_authorize_dialog(stack, page, base_url):
    name = f"docs-page-{urlsplit(base_url).scheme}"
    requests.post(stack.api_url + "/items", json={"name": name, "price": 3}, timeout=10,
                  headers={"Authorization": f"Bearer {stack.api_key}"})
    page.goto(base_url + f"/docs")
    authorize(page, stack.read_key)
    operation = list_items_operation(page)
    operation.locator("input[placeholder='name_contains']").fill(name)
    operation.locator(".execute").click()
    answer = operation.locator(".live-responses-table .response")
    from playwright.sync_api import expect

    expect(answer.locator(".response-col_status")).to_have_text("200")
    assert name in answer.locator(".response-col_description").inner_text()
    shoot(page, f"docs-try-it-out-{urlsplit(base_url).scheme}.png")


def test_try_it_out_without_a_key_shows_the_401_problem(page, base_url):
    page.goto(base_url + "/docs")
    operation = list_items_operation(page)
    operation.locator(".execute").click()
    answer = operation.locator(".live-responses-table .response")
    from playwright.sync_api import expect

    expect(answer.locator(".response-col_status")).to_have_text("401")
    assert "Unauthorized" in answer.locator(".response-col_description").inner_text()
