"""Metrics in-process: the OpenTelemetry adapter read by the SDK's in-memory reader, the
Prometheus adapter read from its registry, every event counted as it happened, labels
bounded, and the off path left as it was.

Store faults are injected with ``CountingStore.fail`` (an in-process store does not fail
on demand); the gunicorn test (test_metrics_gunicorn.py) kills a real memcached instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers import SECRET, CountingIndexStore, FakeClock, one_cookie
from metrics_app import WSGIApp, traffic_app
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client, TestResponse

from wsgi_session import CookieStore, MemoryStore, SessionMiddleware
from wsgi_session.backends.server import ServerSideBackend
from wsgi_session.config import load_env
from wsgi_session.cookies import KeyRing
from wsgi_session.decision import decide
from wsgi_session.errors import ConfigurationError
from wsgi_session.metrics import (
    NO_METRICS,
    NullMetrics,
    OpenTelemetryMetrics,
    PrometheusMetrics,
    metrics_from,
)
from wsgi_session.metrics.base import (
    ANSWERS,
    FAILURES,
    REFUSALS,
    REQUEST_KINDS,
    STORE_OPERATIONS,
    WRITE_OUTCOMES,
)
from wsgi_session.record import Record

WAIT = 20.0
Key = tuple[str, frozenset[tuple[str, Any]]]


class OTel:
    """The adapter on an SDK meter provider whose reader the test collects from."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.metrics = OpenTelemetryMetrics(MeterProvider(metric_readers=[self.reader]))

    def points(self) -> dict[Key, Any]:
        """Each data point by (instrument, attributes): a sum's value, a histogram's point."""
        self.metrics.flush()
        data = self.reader.get_metrics_data()
        assert data is not None
        found: dict[Key, Any] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        key = (metric.name, frozenset(point.attributes.items()))
                        found[key] = getattr(point, "value", point)
        return found

    def counts(self, name: str, label: str) -> Counter[str]:
        return Counter(
            {
                dict(attributes)[label]: value
                for (metric, attributes), value in self.points().items()
                if metric == name and value
            }
        )


class Traffic:
    """A client of the metrics test app, counting what it expects the metrics to say."""

    def __init__(self, middleware: SessionMiddleware, gates: Path) -> None:
        self.middleware = middleware
        self.gates = gates
        self.requests: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.failures: Counter[tuple[str, str]] = Counter()

    def get(self, path: str, cookie: str | None = None, kind: str | None = None) -> TestResponse:
        client = Client(self.middleware)
        if cookie is not None:
            client.set_cookie("session", cookie)
        response = client.get(path)
        if kind is not None:
            self.requests[kind] += 1
        return response

    def race(
        self, slow: str, cookie: str, fast: str, gate: str
    ) -> tuple[TestResponse, TestResponse]:
        """``slow`` loads with ``cookie`` and waits; ``fast`` runs; then ``slow`` goes on."""
        with ThreadPoolExecutor(1) as pool:
            waiting: Future[TestResponse] = pool.submit(self.get, f"{slow}?gate={gate}", cookie)
            loaded = self.gates / f"{gate}.loaded"
            deadline = threading.Event()
            while not loaded.exists():
                assert not deadline.wait(0.005) and not waiting.done(), waiting.result()
            fast_response = self.get(fast, cookie)
            (self.gates / f"{gate}.go").touch()
            return waiting.result(timeout=WAIT), fast_response


def cookie_of(response: TestResponse) -> str:
    return one_cookie(response).value


@pytest.fixture
def otel() -> OTel:
    return OTel()


def build(
    metrics: Any, gates: Path, store: Any = None, **options: Any
) -> tuple[SessionMiddleware, Traffic]:
    holder: list[SessionMiddleware] = []
    app: WSGIApp = traffic_app(gates, lambda: holder[0].sessions)
    middleware = SessionMiddleware(
        app,
        SECRET,
        store=store if store is not None else CountingIndexStore(),
        owner_key="user",
        metrics=metrics,
        **options,
    )
    holder.append(middleware)
    return middleware, Traffic(middleware, gates)


def expired_cookie(middleware: SessionMiddleware, clock: FakeClock) -> str:
    """A signed cookie whose record is still stored but whose session timed out."""
    backend = middleware.backend
    assert isinstance(backend, ServerSideBackend)
    session_id = "e" * 43
    old = clock() - 30 * 86400
    record = Record(old, old, False, None, '{"n":1}')
    backend.store.save(backend.store_key(session_id), record.encode(), 3600)
    return backend.signer.sign(session_id)


def test_every_event_is_counted_as_it_happened(tmp_path: Path, otel: OTel) -> None:
    clock = FakeClock(time.time())
    store = CountingIndexStore()
    middleware, traffic = build(otel.metrics, tmp_path, store, clock=clock)
    traffic.get("/untouched", kind="untouched")
    traffic.get("/untouched", kind="untouched")
    a = cookie_of(traffic.get("/write", kind="created"))
    traffic.writes["written"] += 1
    for _ in range(3):
        traffic.get("/read", a, kind="read")
    for _ in range(2):
        traffic.get("/write", a, kind="updated")
        traffic.writes["written"] += 1
    a = cookie_of(traffic.get("/login?user=alice", a, kind="moved"))
    traffic.writes["written"] += 1
    b = cookie_of(traffic.get("/write", kind="created"))
    traffic.get("/logout", b, kind="deleted")
    traffic.writes["written"] += 2

    # Concurrent writes: merged into a newer record, moved by a login, destroyed by a logout.
    slow, fast = traffic.race("/slow-write", a, "/write", "merge")
    assert slow.status_code == fast.status_code == 200
    traffic.requests["updated"] += 2
    traffic.writes.update(["written", "merged"])
    slow, fast = traffic.race("/slow-write", a, "/login?user=alice", "move")
    a = cookie_of(fast)
    traffic.requests.update(["updated", "moved"])
    traffic.writes.update(["written", "moved"])
    c = cookie_of(traffic.get("/write", kind="created"))
    traffic.writes["written"] += 1
    slow, fast = traffic.race("/slow-write", c, "/logout", "destroy")
    traffic.requests.update(["updated", "deleted"])
    traffic.writes.update(["written", "destroyed"])
    # Two refreshes of one record: the first rewrites it, the second was outrun.
    clock.advance(2 * 3600)
    slow, fast = traffic.race("/slow-read", a, "/read", "outrun")
    traffic.requests["read"] += 2
    traffic.writes.update(["written", "outrun"])

    # Hostile and stale cookies: each one a read of a fresh session, counted by reason.
    signed_unknown = middleware.backend.signer.sign("u" * 43)  # type: ignore[attr-defined]
    for cookie, reason in [
        ("garbage", "unsigned"),
        (a[:-2] + ("AA" if not a.endswith("AA") else "BB"), "bad_signature"),
        ('"' + a + '"', "not_canonical"),
        (a[:40] + "." + a.rsplit(".", 1)[1], "not_canonical"),
        (signed_unknown, "unknown_id"),
        (expired_cookie(middleware, clock), "expired"),
    ]:
        assert traffic.get("/read", cookie, kind="read").status_code == 200
        traffic.refused[reason] += 1

    # The store down: a load answers 503, and so does a write it did not acknowledge.
    store.fail = {"load"}
    assert traffic.get("/read", a).status_code == 503
    traffic.failures["load", "503"] += 1
    store.fail = {"save"}
    assert traffic.get("/write").status_code == 503
    traffic.failures["write", "503"] += 1
    store.fail = set()

    # A revocation: two sessions of bob's end.
    traffic.get("/login?user=bob", kind="created")
    traffic.get("/login?user=bob", kind="created")
    traffic.writes["written"] += 2
    assert traffic.get("/revoke?user=bob", kind="untouched").text == "2"

    assert otel.counts("wsgi_session.requests", "session") == traffic.requests
    assert otel.counts("wsgi_session.writes", "outcome") == traffic.writes
    assert otel.counts("wsgi_session.cookies.refused", "reason") == traffic.refused
    failures = Counter(
        {
            (dict(attributes)["operation"], dict(attributes)["answer"]): value
            for (name, attributes), value in otel.points().items()
            if name == "wsgi_session.store.failures" and value
        }
    )
    assert failures == traffic.failures
    assert otel.points()[("wsgi_session.revoked_sessions", frozenset())] == 2
    # Every store call timed, by store and operation: as many as the store saw.
    timed = Counter(
        {
            dict(attributes)["operation"]: point.count
            for (name, attributes), point in otel.points().items()
            if name == "wsgi_session.store.duration"
        }
    )
    assert {dict(a)["store"] for (n, a) in otel.points() if n == "wsgi_session.store.duration"} == {
        "countingindex"
    }
    assert timed == +store.calls


def test_degraded_answers_are_counted_apart_from_503s(tmp_path: Path, otel: OTel) -> None:
    store = CountingIndexStore()
    _, traffic = build(otel.metrics, tmp_path, store, on_store_error="degrade")
    cookie = cookie_of(traffic.get("/write"))
    store.fail = {"load", "save"}
    assert traffic.get("/write", cookie).status_code == 200  # load failed: an empty session
    assert traffic.get("/write").status_code == 200  # no cookie: the create failed
    points = otel.points()
    assert (
        points[
            (
                "wsgi_session.store.failures",
                frozenset({("operation", "load"), ("answer", "degraded")}),
            )
        ]
        == 1
    )
    assert (
        points[
            (
                "wsgi_session.store.failures",
                frozenset({("operation", "write"), ("answer", "degraded")}),
            )
        ]
        == 1
    )


@pytest.mark.filterwarnings("ignore:The 'session' cookie is too large")  # sent on purpose
def test_the_cookie_store_counts_its_refusals(tmp_path: Path, otel: OTel) -> None:
    clock = FakeClock(time.time())
    _, traffic = build(otel.metrics, tmp_path, CookieStore(), clock=clock, idle_timeout=60)
    cookie = cookie_of(traffic.get("/write"))
    body, signature = cookie.rsplit(".", 1)
    for value in [
        body,  # no signature
        body + "." + signature[::-1],
        "X" + cookie[1:],
        "S" + "a" * 5000,
    ]:
        traffic.get("/read", value)
    clock.advance(120)
    traffic.get("/read", cookie)
    assert otel.counts("wsgi_session.cookies.refused", "reason") == {
        "unsigned": 1,
        "bad_signature": 1,
        "not_canonical": 2,
        "expired": 1,
    }


def test_prometheus_labels_are_the_bounded_sets_and_never_an_id(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    _, traffic = build(metrics, tmp_path)
    cookie = cookie_of(traffic.get("/login?user=alice"))
    traffic.get("/read", cookie)
    traffic.get("/read", "x" * 43 + "." + "y" * 43)
    traffic.get("/logout", cookie)
    metrics.flush()
    allowed = {
        "session": set(REQUEST_KINDS),
        "outcome": set(WRITE_OUTCOMES),
        "reason": set(REFUSALS),
        "operation": set(STORE_OPERATIONS) | set(FAILURES),
        "answer": set(ANSWERS),
        "store": {"countingindex"},
    }
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    assert "alice" not in text and cookie.split(".")[0] not in text
    seen = 0
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("wsgi_session_")
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label != "le":
                    assert value in allowed[label], (family.name, label, value)
                    seen += 1
    assert seen


def test_adapters_on_one_registry_share_its_metrics() -> None:
    registry = CollectorRegistry()
    first, second = PrometheusMetrics(registry), PrometheusMetrics(registry)
    first.request("read")
    second.request("read")
    first.flush()
    second.flush()
    assert registry.get_sample_value("wsgi_session_requests_total", {"session": "read"}) == 2


def test_events_are_published_by_the_thread_within_the_interval() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry, interval=0.02)
    metrics.request("created")
    for _ in range(int(WAIT / 0.01)):
        if registry.get_sample_value("wsgi_session_requests_total", {"session": "created"}):
            break
        threading.Event().wait(0.01)
    assert registry.get_sample_value("wsgi_session_requests_total", {"session": "created"}) == 1
    metrics.close()


def test_off_the_request_path_is_the_plain_one() -> None:
    """Metrics off: no wrapper, no metered store, the plain response: nothing to pay."""
    store = MemoryStore()
    middleware = SessionMiddleware(lambda e, s: [], SECRET, store=store)
    backend = middleware.backend
    assert isinstance(backend, ServerSideBackend)
    assert middleware.metrics is NO_METRICS
    assert backend.decide is decide
    assert backend.carry_out == backend.execute
    assert backend.store is store and backend.writer.store is store
    from wsgi_session.middleware import _Response

    assert middleware._response_type is _Response


def test_metrics_setting_names_an_adapter_shared_by_the_process() -> None:
    settings = {"WSGI_SESSION_SECRET_KEY": SECRET, "WSGI_SESSION_STORE": "memory://"}
    one = load_env({**settings, "WSGI_SESSION_METRICS": "prometheus"}).middleware(lambda e, s: [])
    two = load_env({**settings, "WSGI_SESSION_METRICS": "Prometheus"}).middleware(lambda e, s: [])
    assert isinstance(one.metrics, PrometheusMetrics) and one.metrics is two.metrics
    off = load_env(settings).middleware(lambda e, s: [])
    assert off.metrics is NO_METRICS
    with pytest.raises(ConfigurationError, match="WSGI_SESSION_METRICS='statsd'"):
        load_env({**settings, "WSGI_SESSION_METRICS": "statsd"})


def test_a_metrics_option_that_is_no_adapter_fails_at_start_naming_it() -> None:
    with pytest.raises(ConfigurationError) as raised:
        SessionMiddleware(lambda e, s: [], SECRET, store=MemoryStore(), metrics=object())  # type: ignore[arg-type]
    assert raised.value.setting == "metrics"
    with pytest.raises(ConfigurationError, match="one of"):
        metrics_from("statsd")


def test_an_adapter_of_ones_own_counts_what_it_overrides(tmp_path: Path) -> None:
    class Refusals(NullMetrics):
        enabled = True

        def __init__(self) -> None:
            self.seen: list[str] = []

        def cookie_refused(self, reason: Any) -> None:
            self.seen.append(reason)

    metrics = Refusals()
    _, traffic = build(metrics, tmp_path)
    traffic.get("/read", "nonsense")
    assert metrics.seen == ["unsigned"]


def test_why_a_signed_id_cookie_was_refused() -> None:
    refusal = ServerSideBackend.refusal
    assert refusal("") == "unsigned"
    assert refusal("abc") == "unsigned"
    assert refusal("a" * 43 + ".short") == "not_canonical"
    signer = KeyRing(SECRET).signer("wsgi_session.id")
    assert refusal(signer.sign("b" * 43)[:-1] + "A") == "bad_signature"


def test_a_forked_worker_publishes_its_own_events_not_its_parents() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry, interval=3600)
    metrics.request("read")  # queued in the parent, not yet published
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it publishes, then leave at once
        try:
            metrics.request("created")
            metrics.flush()
            seen = [
                registry.get_sample_value("wsgi_session_requests_total", {"session": kind})
                for kind in ("read", "created")
            ]
            os.write(writer, repr(seen).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as answer:
        assert answer.read() == "[0.0, 1.0]"
    os.waitpid(pid, 0)
    metrics.flush()
    assert registry.get_sample_value("wsgi_session_requests_total", {"session": "read"}) == 1


def test_the_package_imports_no_metrics_library_until_an_adapter_is_built() -> None:
    import subprocess
    import sys

    code = (
        "import sys, wsgi_session\n"
        "from wsgi_session.metrics import PrometheusMetrics, OpenTelemetryMetrics\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('prometheus_client', 'opentelemetry')))\n"
        "PrometheusMetrics()\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]", "True"]


def test_flask_session_metrics_setting_counts_through_the_extension() -> None:
    from flask import Flask, session

    from wsgi_session.flask import Session as FlaskSession

    registry = CollectorRegistry()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, SESSION_METRICS=PrometheusMetrics(registry))

    @app.route("/write")
    def write() -> str:
        session["n"] = 1
        return "ok"

    @app.route("/page")
    def page() -> str:
        return "ok"

    FlaskSession(app, store=MemoryStore())
    client = app.test_client()
    client.get("/write")
    client.get("/page")
    app.extensions["wsgi_session"].metrics.flush()
    counted = {
        kind: registry.get_sample_value("wsgi_session_requests_total", {"session": kind})
        for kind in ("created", "untouched")
    }
    assert counted == {"created": 1, "untouched": 1}
    with pytest.raises(ConfigurationError, match=r"^app\.config: SESSION_METRICS must be one of"):
        bad = Flask(__name__)
        bad.config.update(SECRET_KEY=SECRET, SESSION_METRICS="statsd")
        FlaskSession(bad, store=MemoryStore())
