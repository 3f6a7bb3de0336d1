"""``/docs``: the interactive documentation page and its files, as served (the browser tests are in
tests/stack/test_docs_page.py)."""

from __future__ import annotations

import pytest
import requests
from support import Server

T = 10


@pytest.fixture
def anonymous_url(server) -> str:
    """The server's URL, called without a key: the page is public."""
    return server.url


def test_the_page_is_public_html_with_a_same_origin_policy(anonymous_url):
    r = requests.get(anonymous_url + "/docs", timeout=T)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    policy = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "http" not in policy.replace("'self'", ""), "no other origin is allowed"
    assert r.headers["X-Frame-Options"] == "DENY"


def test_the_page_loads_only_files_of_this_api(anonymous_url):
    page = requests.get(anonymous_url + "/docs", timeout=T).text
    assert "//" not in page.replace("<!--", "").split("-->", 1)[-1], "no absolute URL in the page"
    for path in ("/docs/assets/swagger-ui.css", "/docs/assets/swagger-ui-bundle.js", "/docs/start.js"):
        r = requests.get(anonymous_url + path, timeout=T)
        assert r.status_code == 200 and r.content, path
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_the_script_turns_off_the_online_validator(anonymous_url):
    script = requests.get(anonymous_url + "/docs/start.js", timeout=T).text
    assert "validatorUrl: null" in script and 'url: "/openapi.json"' in script


def test_other_files_of_the_package_are_not_served(anonymous_url):
    for name in ("LICENSE", "VERSION", "..%2F__init__.py", "oauth2-redirect.html"):
        r = requests.get(anonymous_url + f"/docs/assets/{name}", timeout=T)
        assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json", name


def test_api_docs_off_removes_the_page(migrated, tmp_path):
    server = Server({**migrated.env(tmp_path), "API_DOCS": "off"}, tmp_path / "server.log")
    try:
        assert requests.get(server.url + "/docs", timeout=T).status_code == 404
        assert requests.get(server.url + "/openapi.json", timeout=T).status_code == 200
    finally:
        server.stop()
