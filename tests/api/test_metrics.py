"""The metrics port: what a scrape says after known requests, with two Granian workers.

One server for the module, ``python -m app serve`` with WORKERS=2 and its
multiprocess directory in tmp, scraped over HTTP as Prometheus does; each
test compares two scrapes around its own requests, so the tests do not
depend on one another's traffic. The module counts the requests it sends, and
a scrape waits until it shows them all (`Workers`).
"""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.routing import Rule

from support import Database, Server, poll, wait_for

T = 10
WORKERS = 2
POOL_MAX = 3


class Scrape:
    """One scrape's samples: value by (name, sorted labels)."""

    def __init__(self, url: str):
        answer = requests.get(url, timeout=T)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        self.samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                        for family in text_string_to_metric_families(answer.text) for s in family.samples}

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for n, labels in self.samples if n == name]

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.samples.items() if n == name)


class Workers(Server):
    """The module's server, and how many requests it has answered: `send` counts them, and
    `scrape` waits until it shows them all, so that two scrapes around a test's requests differ
    by those requests exactly.

    A worker folds its requests into the shared files once a second (app/metrics.py), so a scrape
    taken at once would miss some; one taken after a fixed pause waits longer than it needs, or,
    on a slow machine, not long enough.
    """

    def __init__(self, env: dict[str, str], log_path: Path):
        super().__init__(env, log_path)
        self.answered = 1  # the readiness check Server's start waited for

    def send(self, method: str, path: str, **kwargs) -> int:
        """One request on a connection of its own (so that the workers share them out); its status."""
        status = requests.request(method, self.url + path, timeout=T, **kwargs).status_code
        self.answered += 1
        return status

    def scrape(self) -> Scrape:
        """A scrape that counts every request answered so far, or after 5 s the last one (the
        test's assertions then say what is missing)."""
        return poll(lambda: Scrape(self.metrics_url), lambda now: counted_in_full(now) >= self.answered,
                    5, 0.1)


def counted_in_full(scrape: Scrape) -> float:
    """The requests a scrape counts in full: a fold adds to the counter first, then to the
    histogram's buckets (app/metrics.py), so the lesser of the two totals."""
    return min(scrape.total("http_requests_total"), scrape.total("http_request_duration_seconds_count"))


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def workers(migrated: Database, tmp_path_factory: pytest.TempPathFactory,
            metrics_dir: Path) -> Iterator[Workers]:
    tmp = tmp_path_factory.mktemp("workers")
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier run")  # must be emptied at start
    # No watchdog: its probes of /health/live would be requests that `Workers` does not count.
    env = {**migrated.env(tmp), "WORKERS": str(WORKERS), "DB_POOL_MIN": "1", "DB_POOL_MAX": str(POOL_MAX),
           "API_AUTH": "off", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "WATCHDOG_TIMEOUT": "0"}
    server = Workers(env, tmp / "server.log")
    yield server
    server.stop()


def test_requests_are_labelled_by_route_template_not_path(workers):
    before = workers.scrape()
    for item_id in (999999991, 999999992, 999999993):  # no such items: 404s
        assert workers.send("GET", f"/items/{item_id}") == 404
    after = workers.scrape()
    labels = {"route": "/items/<item_id>", "method": "GET", "status": "404"}
    assert after.value("http_requests_total", **labels) - before.value("http_requests_total", **labels) == 3
    assert not any("99999999" in label["route"] for label in after.labels_of("http_requests_total"))


def test_unknown_paths_share_one_route_label(workers):
    before = workers.scrape()
    paths = [f"/no-such-{uuid.uuid4().hex}" for _ in range(3)]
    assert [workers.send("GET", path) for path in paths] == [404] * 3
    after = workers.scrape()
    labels = {"route": "unmatched", "method": "GET", "status": "404"}
    assert after.value("http_requests_total", **labels) - before.value("http_requests_total", **labels) == 3
    assert not any(p.strip("/") in str(after.samples) for p in paths)


def test_status_label_is_the_status_sent(workers):
    before = workers.scrape()
    assert workers.send("POST", "/items", json={"name": f"m-{uuid.uuid4().hex[:8]}", "price": 1}) == 201
    assert workers.send("POST", "/items", data=b"{", headers={"Content-Type": "application/json"}) == 400
    after = workers.scrape()
    for status in ("201", "400"):
        labels = {"route": "/items", "method": "POST", "status": status}
        assert after.value("http_requests_total", **labels) - before.value("http_requests_total", **labels) == 1


def test_an_unusual_method_counts_as_other(workers):
    before = workers.scrape()
    workers.send("BREW", "/items")
    after = workers.scrape()
    assert not any(label["method"] == "BREW" for label in after.labels_of("http_requests_total"))
    # No route takes BREW: a 405, counted with the requests no route matched.
    labels = {"route": "unmatched", "method": "other", "status": "405"}
    assert after.value("http_requests_total", **labels) - before.value("http_requests_total", **labels) == 1


def test_counters_and_histogram_counts_equal_what_was_sent_with_two_workers(workers, metrics_dir):
    mix = [("GET", "/items", 200)] * 13 + [("GET", "/items/999999999", 404)] * 7 + \
          [("GET", "/health/ready", 200)] * 5 + [("DELETE", "/items/999999999", 404)] * 4
    routes = {"/items": "/items", "/items/999999999": "/items/<item_id>", "/health/ready": "/health/ready"}
    before = workers.scrape()
    sent = Counter()
    for method, path, status in mix:
        assert workers.send(method, path) == status
        sent[(routes[path], method, str(status))] += 1
    after = workers.scrape()
    for (route, method, status), count in sent.items():
        labels = {"route": route, "method": method, "status": status}
        assert after.value("http_requests_total", **labels) - before.value("http_requests_total", **labels) == count
    per_route = Counter()
    for (route, method, _), count in sent.items():
        per_route[(route, method)] += count
    for (route, method), count in per_route.items():
        labels = {"route": route, "method": method}
        grew = after.value("http_request_duration_seconds_count", **labels) - \
            before.value("http_request_duration_seconds_count", **labels)
        inf = {**labels, "le": "+Inf"}
        assert grew == count
        assert after.value("http_request_duration_seconds_bucket", **inf) == \
            after.value("http_request_duration_seconds_count", **labels)
    # Both workers counted some of them, in files of their own.
    assert len(list(metrics_dir.glob("counter_*.db"))) == WORKERS


def test_folded_requests_fill_the_buckets_as_observing_each_would():
    """A worker folds its requests into the histogram once a second, one update per bucket
    (`_observe_many` writes prometheus_client's private `_sum` and `_buckets`): the same samples as
    observing each request."""
    from app import metrics   # here: in the test process, prometheus_client's in-memory values

    route = f"/fold-{uuid.uuid4().hex[:8]}"
    taken = [0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.0025, 0.2, 0.3, 11.0]
    for seconds in taken:
        metrics._answered.append((Rule(route), "GET", 200, seconds))   # as `Counting` notes a request
    metrics.fold()
    observed = Histogram("observed", "each request observed", buckets=metrics.BUCKETS, registry=CollectorRegistry())
    for seconds in taken:
        observed.observe(seconds)
    want = {(s.labels.get("le"), s.name.removeprefix("observed")): s.value
            for s in observed.collect()[0].samples if not s.name.endswith("_created")}
    got = {(s.labels.get("le"), s.name.removeprefix("http_request_duration_seconds")): s.value
           for s in metrics.DURATION.collect()[0].samples if s.labels.get("route") == route
           and not s.name.endswith("_created")}
    assert got == want
    counted = [s.value for s in metrics.REQUESTS.collect()[0].samples
               if s.labels.get("route") == route and s.name.endswith("_total")]
    assert counted == [len(taken)]


def test_a_request_waiting_for_its_body_is_in_flight(workers):
    with socket.create_connection(("127.0.0.1", workers.port), timeout=T) as sock:
        sock.sendall(b"POST /items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 40\r\n\r\n{\"name\":")  # the rest never comes
        wait_for(lambda: in_flight(workers) == 1, 5, "the request to show as in flight", interval=0.2)
    workers.answered += 1  # the app still answers it (400: its body ended short), and counts it
    wait_for(lambda: in_flight(workers) == 0, 5, "the request to leave the gauge after its client left",
             interval=0.2)


def in_flight(workers: Workers) -> float:
    return Scrape(workers.metrics_url).value("http_requests_in_flight")


def test_pool_gauges_add_up_the_live_workers(workers):
    now = Scrape(workers.metrics_url)
    assert now.value("db_pool_max") == WORKERS * POOL_MAX
    assert 1 * WORKERS <= now.value("db_pool_size") <= WORKERS * POOL_MAX
    assert now.value("db_pool_waiting") == 0
    assert now.value("http_requests_in_flight") == 0
    assert now.labels_of("app_build_info") and now.value("db_pool_connection_errors_total") == 0


def test_metrics_off_opens_no_port(migrated, tmp_path):
    server = Server({**migrated.env(tmp_path), "METRICS": "off"}, tmp_path / "server.log")
    try:
        assert requests.get(server.url + "/health/live", timeout=T).status_code == 200
        with pytest.raises(requests.ConnectionError):
            requests.get(server.metrics_url, timeout=T)
    finally:
        server.stop()


def worker_pids(server: Server) -> set[int]:
    """Granian's worker processes: the children of its main process."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text()
    return {int(pid) for pid in children.split()}


def test_a_worker_that_dies_keeps_its_counts_and_leaves_the_live_gauges(workers):
    """Runs last: it has Granian replace a worker."""
    before = workers.scrape()
    victim = min(worker_pids(workers))
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        pids = worker_pids(workers)
        return victim not in pids and len(pids) >= WORKERS \
            and Scrape(workers.metrics_url).value("db_pool_max") == WORKERS * POOL_MAX

    wait_for(replaced, 20, "a replacement worker with its pool", interval=0.2)
    after = workers.scrape()
    # The dead worker's requests still count.
    assert after.total("http_requests_total") >= before.total("http_requests_total")
    # Its pool no longer does: the pools of the WORKERS live workers, not of three.
    assert after.value("db_pool_max") == WORKERS * POOL_MAX
    assert after.value("http_requests_in_flight") == 0
