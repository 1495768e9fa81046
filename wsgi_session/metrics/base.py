"""The events the request flow reports, and the null object that ignores them.

An adapter (:mod:`wsgi_session.metrics.prometheus`,
:mod:`wsgi_session.metrics.opentelemetry`, or one of your own) implements
:class:`Metrics`: one method per event, each argument one of a few words
listed here. Nothing a client controls reaches a label: never an id, an
owner, a cookie or a secret.

Off (the default), the middleware and the backends hold :data:`NO_METRICS`
and report nothing on the paths every request takes: the reporting wrappers
are put in place only when an adapter is given. The rare paths (a refused
cookie, a store outage, a revocation) call the null object, which does nothing.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

RequestKind = Literal["untouched", "read", "created", "updated", "moved", "deleted"]
"""What a request did with its session (docs/operations.md maps each plan to one)."""

WriteOutcome = Literal["written", "merged", "emptied", "outrun", "moved", "destroyed"]
"""How a write ended (:data:`wsgi_session.decision.Outcome`)."""

StoreOperation = Literal["load", "save", "delete", "index_owner", "unindex_owner", "owned"]
"""A store call: the ``Store`` protocol's and the owner index's."""

Refusal = Literal["unsigned", "bad_signature", "not_canonical", "expired", "unknown_id"]
"""Why a session cookie opened no session."""

Failure = Literal["load", "write"]
"""What the store did not answer (or acknowledge)."""

Answer = Literal["503", "degraded"]
"""What the request got instead: a 503, or (``on_store_error="degrade"``) an empty session."""

REQUEST_KINDS: tuple[RequestKind, ...] = (
    "untouched",
    "read",
    "created",
    "updated",
    "moved",
    "deleted",
)
WRITE_OUTCOMES: tuple[WriteOutcome, ...] = (
    "written",
    "merged",
    "emptied",
    "outrun",
    "moved",
    "destroyed",
)
STORE_OPERATIONS: tuple[StoreOperation, ...] = (
    "load",
    "save",
    "delete",
    "index_owner",
    "unindex_owner",
    "owned",
)
REFUSALS: tuple[Refusal, ...] = (
    "unsigned",
    "bad_signature",
    "not_canonical",
    "expired",
    "unknown_id",
)
FAILURES: tuple[Failure, ...] = ("load", "write")
ANSWERS: tuple[Answer, ...] = ("503", "degraded")

# Seconds: a memcached or Redis round trip is 50 µs to 1 ms, a busy SQLite write
# tens of ms; Prometheus' default buckets start at 5 ms and would see none of it.
STORE_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


@runtime_checkable
class Metrics(Protocol):
    """Where the flow reports; every method is called from request threads at once.

    ``enabled`` ``False`` (the null object) keeps the reporting wrappers out
    of the request path altogether.
    """

    enabled: bool

    def request(self, kind: RequestKind) -> None:
        """A request ended (its response started) having done ``kind`` with its session."""
        ...

    def store_call(self, store: str, operation: StoreOperation, seconds: float) -> None:
        """A store call took ``seconds`` (also when it raised); ``store``: its class, lower case."""
        ...

    def write(self, outcome: WriteOutcome) -> None:
        """A write (refresh, create, update, move, delete) ended with ``outcome``."""
        ...

    def store_failure(self, failure: Failure, answer: Answer) -> None:
        """The store did not answer a load, or did not acknowledge a write."""
        ...

    def cookie_refused(self, reason: Refusal) -> None:
        """A session cookie came and opened no session, for ``reason``."""
        ...

    def revoked(self, count: int) -> None:
        """``count`` live sessions were ended by a revocation (``sessions.revoke``)."""
        ...


class NullMetrics:
    """Metrics off: every event is dropped. Subclass it to count only some events."""

    enabled = False

    def request(self, kind: RequestKind) -> None:
        pass

    def store_call(self, store: str, operation: StoreOperation, seconds: float) -> None:
        pass

    def write(self, outcome: WriteOutcome) -> None:
        pass

    def store_failure(self, failure: Failure, answer: Answer) -> None:
        pass

    def cookie_refused(self, reason: Refusal) -> None:
        pass

    def revoked(self, count: int) -> None:
        pass


NO_METRICS = NullMetrics()
