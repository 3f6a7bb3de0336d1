"""The metrics port: what a scrape says after known requests, with two Granian workers.

One server for the module, ``python -m app serve`` with WORKERS=2 and its
multiprocess directory in tmp, scraped over HTTP as Prometheus does; each
test compares two scrapes around its own requests, so the tests do not
depend on one another's traffic.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.routing import Rule

from support import Database, Server

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


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics")


@pytest.fixture(scope="module")
def workers(migrated: Database, tmp_path_factory: pytest.TempPathFactory, metrics_dir: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("workers")
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier run")  # must be emptied at start
    env = {**migrated.env(tmp), "WORKERS": str(WORKERS), "DB_POOL_MIN": "1", "DB_POOL_MAX": str(POOL_MAX),
           "API_AUTH": "off", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    server = Server(env, tmp / "server.log")
    yield server
    server.stop()


def scrape(server: Server) -> Scrape:
    """A scrape once every request answered so far is in it: each worker folds its requests into
    the shared files once a second (app/metrics.py)."""
    time.sleep(1.5)
    return Scrape(server.metrics_url)


def send(server: Server, method: str, path: str, **kwargs) -> int:
    """One request on a connection of its own (so that the workers share them out); its status."""
    return requests.request(method, server.url + path, timeout=T, **kwargs).status_code


def test_requests_are_labelled_by_route_template_not_path(workers):
    before = scrape(workers)
    for item_id in (999999991, 999999992, 999999993):  # no such items: 404s
        assert send(workers, "GET", f"/items/{item_id}") == 404
    after = scrape(workers)
    labels = {"route": "/items/<item_id>", "method": "GET", "status": "404"}
    assert after.value("http_requests_total", **labels) - before.value("http_requests_total", **labels) == 3
    assert not any("99999999" in label["route"] for label in after.labels_of("http_requests_total"))


def test_unknown_paths_share_one_route_label(workers):
    before = scrape(workers)
    paths = [f"/no-such-{uuid.uuid4().hex}" for _ in range(3)]
    assert [send(workers, "GET", path) for path in paths] == [404] * 3
    after = scrape(workers)
    labels = {"route": "unmatched", "method": "GET", "status": "404"}
    assert after.value("http_requests_total", **labels) - before.value("http_requests_total", **labels) == 3
    assert not any(p.strip("/") in str(after.samples) for p in paths)


def test_status_label_is_the_status_sent(workers):
    before = scrape(workers)
    assert send(workers, "POST", "/items", json={"name": f"m-{uuid.uuid4().hex[:8]}", "price": 1}) == 201
    assert send(workers, "POST", "/items", data=b"{", headers={"Content-Type": "application/json"}) == 400
    after = scrape(workers)
    for status in ("201", "400"):
        labels = {"route": "/items", "method": "POST", "status": status}
        assert after.value("http_requests_total", **labels) - before.value("http_requests_total", **labels) == 1


def test_an_unusual_method_counts_as_other(workers):
    before = scrape(workers)
    send(workers, "BREW", "/items")
    after = scrape(workers)
    assert not any(label["method"] == "BREW" for label in after.labels_of("http_requests_total"))
    # No route takes BREW: a 405, counted with the requests no route matched.
    labels = {"route": "unmatched", "method": "other", "status": "405"}
    assert after.value("http_requests_total", **labels) - before.value("http_requests_total", **labels) == 1


def test_counters_and_histogram_counts_equal_what_was_sent_with_two_workers(workers, metrics_dir):
    mix = [("GET", "/items", 200)] * 13 + [("GET", "/items/999999999", 404)] * 7 + \
          [("GET", "/health/ready", 200)] * 5 + [("DELETE", "/items/999999999", 404)] * 4
    routes = {"/items": "/items", "/items/999999999": "/items/<item_id>", "/health/ready": "/health/ready"}
    before = scrape(workers)
    sent = Counter()
    for method, path, status in mix:
        assert send(workers, method, path) == status
        sent[(routes[path], method, str(status))] += 1
    after = scrape(workers)
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
        metrics._count(Rule(route), "GET", 200, seconds)
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
        deadline = time.monotonic() + 5
        while Scrape(workers.metrics_url).value("http_requests_in_flight") != 1:
            assert time.monotonic() < deadline, "the request never showed as in flight"
            time.sleep(0.2)
    deadline = time.monotonic() + 5
    while Scrape(workers.metrics_url).value("http_requests_in_flight") != 0:
        assert time.monotonic() < deadline, "the request stayed in flight after its client left"
        time.sleep(0.2)


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
        assert send(server, "GET", "/health/live") == 200
        with pytest.raises(requests.ConnectionError):
            requests.get(server.metrics_url, timeout=T)
    finally:
        server.stop()


def worker_pids(server: Server) -> set[int]:
    """Granian's worker processes: the children of its main process."""
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text()
    return {int(pid) for pid in children.split()}


def requests_total(scrape: Scrape) -> float:
    return sum(v for (name, _), v in scrape.samples.items() if name == "http_requests_total")


def test_a_worker_that_dies_keeps_its_counts_and_leaves_the_live_gauges(workers):
    """Runs last: it has Granian replace a worker."""
    before = scrape(workers)
    victim = min(worker_pids(workers))
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while victim in worker_pids(workers) or len(worker_pids(workers)) < WORKERS \
            or Scrape(workers.metrics_url).value("db_pool_max") != WORKERS * POOL_MAX:
        assert time.monotonic() < deadline, "no replacement worker with its pool within 20 s"
        time.sleep(0.2)
    after = scrape(workers)
    assert requests_total(after) >= requests_total(before)  # the dead worker's requests still count
    # Its pool no longer does: the pools of the WORKERS live workers, not of three.
    assert after.value("db_pool_max") == WORKERS * POOL_MAX
    assert after.value("http_requests_in_flight") == 0
