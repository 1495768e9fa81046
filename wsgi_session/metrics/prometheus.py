"""The Prometheus adapter: counters and a latency histogram in a ``prometheus_client`` registry.

Needs the ``[prometheus]`` extra; ``prometheus_client`` is imported when the
adapter is built, not when this module is. Under gunicorn with several
workers, set ``PROMETHEUS_MULTIPROC_DIR`` before the workers start and serve
``/metrics`` from a ``MultiProcessCollector``: the numbers then add up across
workers (docs/operations.md shows the set-up and its ``child_exit`` hook).
"""

from __future__ import annotations

import threading
from typing import Any

from wsgi_session.metrics.base import (
    ANSWERS,
    FAILURES,
    REFUSALS,
    REQUEST_KINDS,
    STORE_BUCKETS,
    WRITE_OUTCOMES,
    BufferedMetrics,
    Totals,
)

NAMESPACE = "wsgi_session"

# One set of collectors per registry: a metric may be registered only once in
# one, and a process may build several middlewares (Flask per configuration,
# Django on override_settings) that all report to the same series.
_COLLECTORS: dict[int, tuple[Any, _Collectors]] = {}
_COLLECTORS_LOCK = threading.Lock()


class _Collectors:
    """The registered metrics, each child of a bounded label set made once."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        requests = Counter(
            f"{NAMESPACE}_requests",
            "Requests by what they did with their session",
            ["session"],
            registry=registry,
        )
        self.requests = {kind: requests.labels(kind) for kind in REQUEST_KINDS}
        self.store_seconds = Histogram(
            f"{NAMESPACE}_store_seconds",
            "Store calls by store and operation, and how long they took",
            ["store", "operation"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        writes = Counter(
            f"{NAMESPACE}_writes", "Session writes by outcome", ["outcome"], registry=registry
        )
        self.writes = {outcome: writes.labels(outcome) for outcome in WRITE_OUTCOMES}
        failures = Counter(
            f"{NAMESPACE}_store_failures",
            "Loads the store did not answer and writes it did not acknowledge",
            ["operation", "answer"],
            registry=registry,
        )
        self.failures = {
            (failure, answer): failures.labels(failure, answer)
            for failure in FAILURES
            for answer in ANSWERS
        }
        refused = Counter(
            f"{NAMESPACE}_cookies_refused",
            "Session cookies that opened no session, by reason",
            ["reason"],
            registry=registry,
        )
        self.refused = {reason: refused.labels(reason) for reason in REFUSALS}
        self.revoked = Counter(
            f"{NAMESPACE}_revoked_sessions",
            "Live sessions ended by a revocation",
            registry=registry,
        )


def _collectors(registry: Any) -> _Collectors:
    with _COLLECTORS_LOCK:
        found = _COLLECTORS.get(id(registry))
        if found is None or found[0] is not registry:
            found = _COLLECTORS[id(registry)] = (registry, _Collectors(registry))
        return found[1]


class PrometheusMetrics(BufferedMetrics):
    """Report to Prometheus; ``registry`` defaults to ``prometheus_client.REGISTRY``.

    Every instance on one registry shares its metrics, so building several
    middlewares in one process is fine. Events reach the metrics at most
    ``interval`` seconds late (:class:`~wsgi_session.metrics.base.BufferedMetrics`).
    """

    def __init__(self, registry: Any = None, *, interval: float = 1.0) -> None:
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        self.registry = registry
        self._collectors = _collectors(registry)
        self._store_children: dict[tuple[str, str], Any] = {}
        super().__init__(interval)

    def publish(self, totals: Totals) -> None:
        collectors = self._collectors
        for counts, children in (
            (totals.requests, collectors.requests),
            (totals.writes, collectors.writes),
            (totals.failures, collectors.failures),
            (totals.refused, collectors.refused),
        ):
            for label, count in counts.items():
                children[label].inc(count)  # type: ignore[index]
        if totals.revoked:
            collectors.revoked.inc(totals.revoked)
        for (store, operation), (buckets, seconds) in totals.store_buckets.items():
            child = self._store_children.get((store, operation))
            if child is None:
                child = collectors.store_seconds.labels(store, operation)
                self._store_children[store, operation] = child
            _observe_many(child, buckets, seconds)


def _observe_many(child: Any, buckets: list[int], seconds: float) -> None:
    """Add calls, counted by bucket, to a histogram's child, as that many observe() would.

    prometheus_client observes one value at a time; its children keep a value
    per bucket (not cumulative) and the sum, which this adds to directly.
    """
    child._sum.inc(seconds)
    for value, count in zip(child._buckets, buckets, strict=True):
        if count:
            value.inc(count)
