"""Metrics and audit events: the protocol the flow reports to, and its adapters.

``base``: the :class:`Metrics` protocol and its null object; ``prometheus``
and ``opentelemetry``: the adapters (each imports its library only when
built); ``audit``: the audit log. See docs/operations.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from wsgi_session.errors import ConfigurationError
from wsgi_session.metrics.audit import AUDIT_LOGGER, AuditLog
from wsgi_session.metrics.base import NO_METRICS, Metrics, NullMetrics
from wsgi_session.metrics.opentelemetry import OpenTelemetryMetrics
from wsgi_session.metrics.prometheus import PrometheusMetrics

# The adapters a setting names (WSGI_SESSION_METRICS, SESSION_METRICS), with their extra.
ADAPTERS: dict[str, tuple[Callable[[], Metrics], str]] = {
    "prometheus": (PrometheusMetrics, "prometheus"),
    "opentelemetry": (OpenTelemetryMetrics, "opentelemetry"),
}
_NAMED: dict[str, Metrics] = {}
_NAMED_LOCK = threading.Lock()


def metrics_from(metrics: Metrics | str | None) -> Metrics:
    """The adapter the ``metrics`` option gives: itself, one named, or the null object.

    A name gives one adapter per process, shared by every middleware built
    with it (Flask and Django build one per configuration).
    """
    if metrics is None or metrics == "off":
        return NO_METRICS
    if isinstance(metrics, str):
        found = ADAPTERS.get(metrics.lower())
        if found is None:
            raise ConfigurationError(
                "{metrics} must be one of {allowed} or a Metrics object, not {value!r}",
                "metrics",
                allowed=("off", *ADAPTERS),
                value=metrics,
            )
        build, extra = found
        with _NAMED_LOCK:
            if metrics.lower() not in _NAMED:
                try:
                    _NAMED[metrics.lower()] = build()
                except ImportError as exc:
                    raise ConfigurationError(
                        "{metrics}={value!r} needs the [{extra}] extra "
                        "(pip install 'wsgi-session[{extra}]'): {error}",
                        "metrics",
                        value=metrics,
                        extra=extra,
                        error=exc,
                    ) from exc
            return _NAMED[metrics.lower()]
    if not isinstance(metrics, Metrics):
        raise ConfigurationError(
            "{metrics} must implement the Metrics protocol (wsgi_session.metrics.base), not {kind}",
            "metrics",
            kind=type(metrics).__name__,
        )
    return metrics


__all__ = [
    "ADAPTERS",
    "AUDIT_LOGGER",
    "NO_METRICS",
    "AuditLog",
    "Metrics",
    "NullMetrics",
    "OpenTelemetryMetrics",
    "PrometheusMetrics",
    "metrics_from",
]
