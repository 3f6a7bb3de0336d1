"""Unit tests for the verifier's edge checks (tools/verify/edge.py, nginx.py, tls.py, web.py), no engine.

tests/unit/data/edge holds what a real edge of the prod stack gave
(items-edge:local, nginx 1.30 on Debian trixie, the self-signed pair of
tools/self_signed_tls.sh):

- nginx-T.txt: `nginx -T -q` run in the container, as the verifier runs it;
- answers.json: a GET /health over HTTPS, and a GET with a 9 KiB URI over
  HTTP (nginx's own 414), each as status, headers and body;
- served.crt: the certificate its HTTPS port served.

The live checks run against real local servers (Python's TLS and HTTP
servers replaying those answers, on ports the edge's record publishes; see
edge_doubles.py); only `nginx -T` is scripted, since it needs the
container. The expired pair is the weakened stack's
(tests/stack/weakened/expired-tls.*).
"""

from __future__ import annotations

import json
import ssl
from datetime import datetime, timedelta, timezone
from email.message import Message
from pathlib import Path

import pytest
from edge_doubles import ANSWERS, DATA, DUMP, edge_record, fresh_pair, make_pair, server

from tools.verify import edge, nginx, tls, web
from tools.verify.model import API, EDGE, FAIL, PASS, WARN, Failed
from tools.verify.registry import run_check
from tools.verify.run import COMPOSE
from tools.verify.targets import Target

SERVED = ssl.PEM_cert_to_DER_cert((DATA / "edge" / "served.crt").read_text())
WEAKENED = Path(__file__).parents[1] / "stack" / "weakened"
API_RECORD = json.loads((DATA / "inspect" / "stack-flask-api.json").read_text())
UTC = timezone.utc
EXPIRED = "CN=localhost: expired on 2021-01-01 00:00 UTC"  # the weakened stack's certificate


# --- nginx -T ------------------------------------------------------------------------------------


def test_the_dump_splits_into_the_files_nginx_read():
    files = nginx.split_files("nginx: [warn] something\n" + DUMP)
    assert list(files) == ["/etc/nginx/nginx.conf", "/etc/nginx/mime.types", "/etc/nginx/conf.d/edge.conf",
                           "/etc/nginx/conf.d/edge/api.conf"]


def test_includes_are_spliced_in_place_and_a_glob_stays_in_its_folder():
    config = nginx.load(DUMP)
    http = nginx.blocks(config, "http")[0]
    assert [d.name for d in config] == ["worker_processes", "pid", "error_log", "events", "http"]
    assert "types" in [d.name for d in http]  # mime.types, included inside http
    # conf.d/*.conf is edge.conf only: edge/api.conf is included by each public server, not by http.
    assert [d.name for d in http].count("server") == 3
    assert "location" not in [d.name for d in http]
    where = [w for w, _ in nginx.locations(config)]
    assert where == ["server 8080 location /", "server 8080 location = /_edge/problem",
                     "server 8443 location /", "server 8443 location = /_edge/problem",
                     "server 127.0.0.1:8081 location = /health"]


def test_the_running_edge_proxies_from_both_public_servers_with_its_settings():
    proxied = nginx.proxied(nginx.load(DUMP))
    assert [w for w, _ in proxied] == ["server 8080 location /", "server 8443 location /"]
    _, chain = proxied[1]
    assert [nginx.value(chain, n) for n in edge.CLIENT_TIMEOUTS] == ["10s", "10s", "10s"]
    assert nginx.value(chain, "client_max_body_size") == "65536"
    assert [d.args for d in nginx.effective(chain, "limit_req")] == [
        ["zone=reads", "burst=200", "nodelay"], ["zone=writes", "burst=40", "nodelay"]]
    assert nginx.value(chain, "proxy_request_buffering") == "on"
    assert nginx.value(chain, "server_tokens") == "off"


def test_tokens_follow_nginx_quoting_comments_and_variables():
    text = 'a "b c" \'d;e\' "f\\"g" ${X}y {#comment ; }\n h; # end'
    assert list(nginx.tokens(text)) == ["a", "b c", "d;e", 'f"g', "${X}y", "{", "h", ";"]
    config = nginx.parse('map $a $b { "~^x{1,2}$" 1; default 0; }\nlog_format j \'{"a":"$b"}\';')
    assert config[0].block[0].name == "~^x{1,2}$" and config[1].args == ["j", '{"a":"$b"}']


def test_the_innermost_level_that_sets_a_directive_wins_and_limits_inherit_only_into_silent_levels():
    config = nginx.load("# configuration file /etc/nginx/nginx.conf:\n"
                        "http { send_timeout 5s; limit_req zone=a; limit_req zone=b;\n"
                        "  server { listen 80; location / { proxy_pass http://x; }\n"
                        "           location /w { send_timeout 90s; limit_req zone=c;\n"
                        "                         proxy_pass http://x; } } }\n")
    (_, plain), (_, own) = nginx.proxied(config)
    assert nginx.value(plain, "send_timeout") == "5s" and nginx.value(own, "send_timeout") == "90s"
    assert [d.args for d in nginx.effective(plain, "limit_req")] == [["zone=a"], ["zone=b"]]
    assert [d.args for d in nginx.effective(own, "limit_req")] == [["zone=c"]]
    assert nginx.value(plain, "client_header_timeout") is None


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10), ("10", 10), ("1m30s", 90), ("500ms", 0.5),
                                                ("2h", 7200), ("1m 30s", None), ("ten", None), ("", None)])
def test_nginx_times(text, seconds):
    assert nginx.seconds(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("65536", 65536), ("64k", 65536), ("1m", 2**20), ("1G", 2**30),
                                            ("0", 0), ("1.5m", None)])
def test_nginx_sizes(text, size):
    assert nginx.size(text) == size


# --- certificates and HSTS, pure ------------------------------------------------------------------

SERVED_VALIDITY = tls.validity(SERVED)


def test_the_served_certificate_is_read():
    assert SERVED_VALIDITY.subject == "CN=localhost"
    assert SERVED_VALIDITY.not_after - SERVED_VALIDITY.not_before == timedelta(days=365)


@pytest.mark.parametrize(
    ("offset", "result", "fragment"),
    [(timedelta(days=1), PASS, "valid until"),
     (timedelta(days=340), WARN, "expires in 25 days"),
     (timedelta(days=365), FAIL, "expired on"),
     (timedelta(days=-1), FAIL, "not valid before")],
    ids=["fresh", "renew-soon", "expired", "not-yet-valid"])
def test_certificate_dates_against_now(offset, result, fragment):
    outcome, detail = tls.judge(SERVED_VALIDITY, SERVED_VALIDITY.not_before + offset)
    assert outcome == result and fragment in detail and detail.startswith("CN=localhost: ")


def test_the_weakened_stacks_certificate_is_expired():
    der = ssl.PEM_cert_to_DER_cert((WEAKENED / "expired-tls.crt").read_text())
    assert tls.judge(tls.validity(der), datetime.now(UTC)) == (FAIL, EXPIRED)


def captured_hsts() -> str:
    return dict(ANSWERS["https-health"]["headers"])["Strict-Transport-Security"]


@pytest.mark.parametrize(
    ("value", "age"),
    [(None, None), ("", None), ("max-age=31536000", 31536000), ('max-age="31536000"', 31536000),
     ("MAX-AGE=100 ; includeSubDomains", 100), ("includeSubDomains", None), ("max-age=1; max-age=2", None),
     ("max-age=abc", None), ("max-age=-1", None)])
def test_hsts_max_age(value, age):
    assert web.hsts_max_age(value) == age


def test_the_edges_hsts_is_two_years():
    assert web.hsts_max_age(captured_hsts()) == 63072000


def answer(name: str, **changes) -> web.Answer:
    captured = {**ANSWERS[name], **changes}
    headers = Message()
    for key, value in captured["headers"]:
        headers[key] = value
    return web.Answer(captured["status"], headers, captured["body"])


def test_the_edges_414_is_a_problem_document_without_a_version():
    assert web.problem_faults(answer("uri-too-long")) == []
    assert web.server_version(answer("uri-too-long")) is None


def test_an_html_error_page_is_no_problem_document():
    page = answer("uri-too-long", headers=[["Server", "nginx/1.30.4"], ["Content-Type", "text/html"]],
                  body="<html><head><title>414 Request-URI Too Large</title></head></html>")
    assert web.problem_faults(page) == ["Content-Type text/html",
                                        "body is not JSON: '<html><head><title>414 Request-URI Too L'"]
    assert web.server_version(page) == "nginx/1.30.4"


def test_a_problem_document_needs_the_answers_status_and_a_title():
    doc = answer("uri-too-long", body='{"type": "about:blank", "status": 400}')
    assert web.problem_faults(doc) == ["status member 400, the answer's is 414", "no title"]


# --- the checks, against real local servers -------------------------------------------------------


@pytest.fixture(scope="module")
def current_pair(tmp_path_factory) -> tuple[Path, Path]:
    return fresh_pair(tmp_path_factory.mktemp("tls"))


class Edge(Target):
    """The captured edge, published on the given local ports; `nginx -T` answers with `dump`."""

    def __init__(self, http: int | None = None, https: int | None = None, dump: str = DUMP, stack=None):
        super().__init__(EDGE, edge_record(http, https),
                         stack=stack if stack is not None else {API: Target(API, API_RECORD)})
        self.dump, self.commands = dump, []

    def exec(self, cmd, user=""):
        self.commands.append(cmd)
        return 0, self.dump


def test_a_current_certificate_passes(current_pair):
    with server(ANSWERS["https-health"], current_pair) as port:
        outcome, detail = edge.check_tls_certificate(Edge(https=port))
    assert outcome == PASS
    assert detail.startswith("CN=localhost: valid until ") and detail.endswith("(364 days)")


def test_a_certificate_ending_within_30_days_warns(tmp_path):
    now = datetime.now(UTC)
    pair = make_pair(tmp_path, now - timedelta(days=300), now + timedelta(days=10, hours=1))
    with server(ANSWERS["https-health"], pair) as port:
        outcome, detail = edge.check_tls_certificate(Edge(https=port))
    assert outcome == WARN and "expires in 10 days" in detail


def test_an_expired_certificate_fails():
    pair = (WEAKENED / "expired-tls.crt", WEAKENED / "expired-tls.key")
    with server(ANSWERS["https-health"], pair) as port:
        assert edge.check_tls_certificate(Edge(https=port)) == (FAIL, EXPIRED)


def test_plain_http_on_the_https_port_fails_the_tls_checks():
    with server(ANSWERS["https-health"]) as port:
        for check in (edge.check_tls_certificate, edge.check_tls_versions):
            with pytest.raises(Failed, match=f"no TLS 1.2\\+ handshake on 127.0.0.1:{port}: "):
                check(Edge(https=port))


def test_an_unpublished_https_port_fails_every_https_check():
    run = [run_check(c, Edge(), "prod") for c in COMPOSE.checks
           if c.id in ("EDGE-TLS-CERT", "EDGE-TLS-VERSIONS", "EDGE-HSTS")]
    assert {(f.id, f.result, f.detail) for f in run} == {
        (i, FAIL, "8443/tcp is not published") for i in ("EDGE-TLS-CERT", "EDGE-TLS-VERSIONS", "EDGE-HSTS")}


def test_tls_1_2_and_later_only_passes(current_pair):
    with server(ANSWERS["https-health"], current_pair) as port:
        assert edge.check_tls_versions(Edge(https=port)) == (PASS, "TLSv1.3 agreed; TLS 1.0 and 1.1 refused")


def test_a_server_that_still_speaks_tls_1_0_fails(current_pair):
    oldest = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_3)
    with server(ANSWERS["https-health"], current_pair, oldest, any_cipher=True) as port:
        assert edge.check_tls_versions(Edge(https=port)) == (
            FAIL, "accepts TLS 1.0 and TLS 1.1 (TLSv1.3 otherwise)")


def test_a_client_that_cannot_offer_the_old_versions_warns_instead_of_passing(current_pair, monkeypatch):
    def cannot(host, port, version):
        raise tls.ClientCannot("this host's OpenSSL cannot offer it")

    monkeypatch.setattr(tls, "refuses", cannot)
    with server(ANSWERS["https-health"], current_pair) as port:
        outcome, detail = edge.check_tls_versions(Edge(https=port))
    assert outcome == WARN and detail.endswith("cannot offer TLS 1.0 or TLS 1.1 to test their refusal")


def test_refusal_is_the_servers_not_this_clients(current_pair):
    """Without `any_cipher` this host's OpenSSL offers no TLS 1.0 at all: refuses() must not rely on that."""
    with server(ANSWERS["https-health"], current_pair, (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_3),
                any_cipher=True) as port:
        assert tls.refuses("127.0.0.1", port, tls.OLD["TLS 1.0"]) is False
    with server(ANSWERS["https-health"], current_pair) as port:
        assert tls.refuses("127.0.0.1", port, tls.OLD["TLS 1.0"]) is True


def test_hsts_of_two_years_passes(current_pair):
    with server(ANSWERS["https-health"], current_pair) as port:
        assert edge.check_hsts(Edge(https=port)) == (PASS, "max-age=63072000; includeSubDomains")


@pytest.mark.parametrize(
    ("hsts", "expected"),
    [(None, (FAIL, "no Strict-Transport-Security (GET /health 200)")),
     ("max-age=86400", (FAIL, "max-age 86400 s is under a year: max-age=86400")),
     ("includeSubDomains", (FAIL, "Strict-Transport-Security without a valid max-age: includeSubDomains"))])
def test_missing_or_short_hsts_fails(current_pair, hsts, expected):
    headers = [h for h in ANSWERS["https-health"]["headers"] if h[0] != "Strict-Transport-Security"]
    headers += [["Strict-Transport-Security", hsts]] if hsts else []
    captured = {**ANSWERS["https-health"], "headers": headers}
    with server(captured, current_pair) as port:
        assert edge.check_hsts(Edge(https=port)) == expected


def test_the_edges_own_414_passes():
    with server(ANSWERS["uri-too-long"]) as port:
        t = Edge(http=port)
        assert edge.check_errors(t) == (
            PASS, "414 application/problem+json, Server: nginx; server_tokens off")
    assert t.commands == [["nginx", "-T", "-q"]]


def test_an_html_414_with_a_version_fails():
    captured = {"status": 414, "headers": [["Server", "nginx/1.30.4"], ["Content-Type", "text/html"]],
                "body": "<html><body>414 Request-URI Too Large</body></html>"}
    with server(captured) as port:
        outcome, detail = edge.check_errors(Edge(http=port))
    assert outcome == FAIL
    assert detail.split("; ")[:3] == ["Content-Type text/html",
                                      "body is not JSON: '<html><body>414 Request-URI Too Large</b'",
                                      "Server: nginx/1.30.4"]


def test_server_tokens_on_anywhere_fails():
    dump = DUMP.replace("server_tokens  off;", "server_tokens  on;")
    with server(ANSWERS["uri-too-long"]) as port:
        outcome, detail = edge.check_errors(Edge(http=port, dump=dump))
    assert outcome == FAIL and "server_tokens on in server 8080 location /" in detail


def test_the_running_timeouts_and_limits_pass():
    assert edge.check_timeouts(Edge()) == (
        PASS, "client_header_timeout 10s, client_body_timeout 10s, send_timeout 10s; "
              "bodies buffered (2 locations)")
    assert edge.check_limits(Edge()) == (
        PASS, "client_max_body_size 65536, limit_req reads, writes, limit_conn clients 64 (2 locations)")


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [("client_body_timeout    10s;", "client_body_timeout    120s;",
      "client_body_timeout 120s in server 8080 location / (more than 60s)"),
     ("send_timeout           10s;", "", "send_timeout not set in server 8080 location /"),
     ("proxy_request_buffering  on;", "proxy_request_buffering  off;",
      "proxy_request_buffering off in server 8443"),
     ("client_header_timeout  10s;", "client_header_timeout  soon;",
      "client_header_timeout soon in server 8080")],
    ids=["slow-body", "no-send-timeout", "unbuffered", "unreadable"])
def test_weak_timeouts_fail(old, new, fragment):
    assert old in DUMP
    outcome, detail = edge.check_timeouts(Edge(dump=DUMP.replace(old, new)))
    assert outcome == FAIL and fragment in detail


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [("limit_conn  clients 64;", "", "no limit_conn in server 8080 location /"),
     ("    limit_req   zone=reads   burst=200   nodelay;\n    limit_req   zone=writes  burst=40  nodelay;\n",
      "", "no limit_req in server 8443 location /"),
     ("client_max_body_size     65536;", "client_max_body_size     0;",
      "client_max_body_size 0 in server 8080 location /: no limit"),
     ("client_max_body_size     65536;", "client_max_body_size     1m;",
      "client_max_body_size 1m in server 8080 location /, the API's MAX_BODY_BYTES is 65536"),
     ("client_max_body_size     65536;", "", "client_max_body_size not set in server 8443 location /")],
    ids=["no-conn-limit", "no-rate-limit", "unlimited-body", "body-over-the-apis", "no-body-limit"])
def test_weak_limits_fail(old, new, fragment):
    assert old in DUMP
    outcome, detail = edge.check_limits(Edge(dump=DUMP.replace(old, new)))
    assert outcome == FAIL and fragment in detail


def test_a_configuration_that_proxies_nothing_or_cannot_be_read_fails():
    with pytest.raises(Failed, match="no location passes requests to the API"):
        edge.check_timeouts(Edge(dump=DUMP.replace("proxy_pass http://api;", "")))

    class Broken(Edge):
        def exec(self, cmd, user=""):
            return 1, 'nginx: [emerg] unknown directive "bogus"'

    finding = run_check(next(c for c in COMPOSE.checks if c.id == "EDGE-LIMITS"), Broken(), "prod")
    assert (finding.result, finding.detail) == (
        FAIL, 'nginx -T failed (1): nginx: [emerg] unknown directive "bogus"')
