"""The OpenTelemetry adapter: instruments on a meter of the application's meter provider.

Needs the ``[opentelemetry]`` extra, the API package only: the application
brings its SDK, reader and exporter, and sets the global meter provider (or
passes ``meter_provider``). ``opentelemetry`` is imported when the adapter is
built, not when this module is. The instruments' names are the Prometheus
adapter's with dots (``wsgi_session.requests``); docs/operations.md lists them.
"""

from __future__ import annotations

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

METER_NAME = "wsgi_session"


class OpenTelemetryMetrics(BufferedMetrics):
    """Report to OpenTelemetry; ``meter_provider`` defaults to the global one.

    Events reach the instruments at most ``interval`` seconds late
    (:class:`~wsgi_session.metrics.base.BufferedMetrics`).
    """

    def __init__(self, meter_provider: Any = None, *, interval: float = 1.0) -> None:
        from opentelemetry import metrics

        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter = provider.get_meter(METER_NAME)
        # Each attribute set made once: bounded, and no dict built per event.
        self._requests = meter.create_counter(
            "wsgi_session.requests", "{request}", "Requests by what they did with their session"
        )
        self._request_attributes = {kind: {"session": kind} for kind in REQUEST_KINDS}
        try:
            self._store_duration = meter.create_histogram(
                "wsgi_session.store.duration",
                "s",
                "Store calls by store and operation, and how long they took",
                explicit_bucket_boundaries_advisory=STORE_BUCKETS,
            )
        except TypeError:  # an API before 1.23 takes no advice: the SDK's buckets
            self._store_duration = meter.create_histogram(
                "wsgi_session.store.duration",
                "s",
                "Store calls by store and operation, and how long they took",
            )
        self._writes = meter.create_counter(
            "wsgi_session.writes", "{write}", "Session writes by outcome"
        )
        self._write_attributes = {outcome: {"outcome": outcome} for outcome in WRITE_OUTCOMES}
        self._failures = meter.create_counter(
            "wsgi_session.store.failures",
            "{failure}",
            "Loads the store did not answer and writes it did not acknowledge",
        )
        self._failure_attributes = {
            (failure, answer): {"operation": failure, "answer": answer}
            for failure in FAILURES
            for answer in ANSWERS
        }
        self._refused = meter.create_counter(
            "wsgi_session.cookies.refused",
            "{cookie}",
            "Session cookies that opened no session, by reason",
        )
        self._refusal_attributes = {reason: {"reason": reason} for reason in REFUSALS}
        self._revoked = meter.create_counter(
            "wsgi_session.revoked_sessions", "{session}", "Live sessions ended by a revocation"
        )
        super().__init__(interval)

    def publish(self, totals: Totals) -> None:
        for counts, counter, attributes in (
            (totals.requests, self._requests, self._request_attributes),
            (totals.writes, self._writes, self._write_attributes),
            (totals.failures, self._failures, self._failure_attributes),
            (totals.refused, self._refused, self._refusal_attributes),
        ):
            for label, count in counts.items():
                counter.add(count, attributes[label])  # type: ignore[index]
        if totals.revoked:
            self._revoked.add(totals.revoked)
        # The API records one value at a time: each call is recorded here, off the request.
        for (store, operation), calls in totals.store_calls.items():
            labels = {"store": store, "operation": operation}
            for seconds in calls:
                self._store_duration.record(seconds, labels)
