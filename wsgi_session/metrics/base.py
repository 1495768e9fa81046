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

On, an event must cost the request next to nothing: a metrics library takes
a lock or two per event (about a microsecond each on a shared VM).
:class:`BufferedMetrics` appends each event to a queue instead, and a thread
of its own hands the totals to the library once a ``interval``: the adapters
are built on it.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import math
import os
import threading
import weakref
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat, starmap
from typing import Any, Literal, Protocol, runtime_checkable

RequestKind = Literal["untouched", "read", "created", "updated", "moved", "deleted"]
"""What a request did with its session (docs/operations.md maps each plan to one)."""

WriteOutcome = Literal["written", "merged", "emptied", "outrun", "moved", "withheld", "destroyed"]
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
    "withheld",
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

    def store_timer(self, store: str, operation: StoreOperation) -> Callable[[float], None]:
        """What to call with the seconds each ``operation`` on ``store`` took (raising or not).

        Asked once per store and operation, when the backend is built;
        ``store`` is the store's class name, lower case, without ``Store``.
        """
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

    def store_timer(self, store: str, operation: StoreOperation) -> Callable[[float], None]:
        return _ignore

    def write(self, outcome: WriteOutcome) -> None:
        pass

    def store_failure(self, failure: Failure, answer: Answer) -> None:
        pass

    def cookie_refused(self, reason: Refusal) -> None:
        pass

    def revoked(self, count: int) -> None:
        pass


NO_METRICS = NullMetrics()


def _ignore(seconds: float) -> None:
    pass


@dataclass
class Totals:
    """What happened since the last :meth:`BufferedMetrics.publish`: counts by label."""

    requests: Counter[RequestKind] = field(default_factory=Counter)
    writes: Counter[WriteOutcome] = field(default_factory=Counter)
    failures: Counter[tuple[Failure, Answer]] = field(default_factory=Counter)
    refused: Counter[Refusal] = field(default_factory=Counter)
    revoked: int = 0
    # (store, operation) -> the seconds of each call, for a library that records them one
    # at a time; and (calls per bucket of STORE_BUCKETS, then above the last; their sum).
    store_calls: dict[tuple[str, StoreOperation], list[float]] = field(default_factory=dict)
    store_buckets: dict[tuple[str, StoreOperation], tuple[list[int], float]] = field(
        default_factory=dict
    )


class BufferedMetrics:
    """Events queued without a lock or a library call; published once an ``interval``.

    Each event is one ``deque.append`` on the request's thread. A daemon
    thread (started again in a forked worker) drains the queues every
    ``interval`` seconds into :class:`Totals` and calls :meth:`publish`,
    which a subclass implements with its library; :meth:`flush` does it at
    once (at exit too). A queued event is at most ``interval`` late.
    """

    enabled = True
    request: Callable[[RequestKind], None]
    write: Callable[[WriteOutcome], None]
    cookie_refused: Callable[[Refusal], None]
    revoked: Callable[[int], None]

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._queued_requests: deque[RequestKind] = deque()
        self._queued_writes: deque[WriteOutcome] = deque()
        self._queued_failures: deque[tuple[Failure, Answer]] = deque()
        self._queued_refused: deque[Refusal] = deque()
        self._queued_revoked: deque[int] = deque()
        self._queued_store_calls: dict[tuple[str, StoreOperation], deque[float]] = {}
        # The events with one label are the queues' own append: no Python frame at all.
        self.request = self._queued_requests.append
        self.write = self._queued_writes.append
        self.cookie_refused = self._queued_refused.append
        self.revoked = self._queued_revoked.append
        self._flushing = threading.Lock()
        self._stopped = threading.Event()
        self._start_thread()
        # Weakly: an adapter nobody holds any more stops publishing and goes.
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(this, "_forked"))
        atexit.register(_call, this, "close")

    def store_timer(self, store: str, operation: StoreOperation) -> Callable[[float], None]:
        queue = self._queued_store_calls.setdefault((store, operation), deque())
        return queue.append

    def store_failure(self, failure: Failure, answer: Answer) -> None:
        self._queued_failures.append((failure, answer))

    def publish(self, totals: Totals) -> None:
        """Add ``totals`` to the library's metrics (called by one thread at a time)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Publish every event queued so far."""
        with self._flushing:
            totals = Totals(
                Counter(_drain(self._queued_requests)),
                Counter(_drain(self._queued_writes)),
                Counter(_drain(self._queued_failures)),
                Counter(_drain(self._queued_refused)),
                sum(_drain(self._queued_revoked)),
            )
            for key, queue in list(self._queued_store_calls.items()):
                seconds = _drain(queue)
                if not seconds:
                    continue
                totals.store_calls[key] = seconds
                # Counted in C: no Python step per call.
                buckets = Counter(map(bisect.bisect_left, repeat(STORE_BUCKETS), seconds))
                counts = [buckets[index] for index in range(len(STORE_BUCKETS) + 1)]
                totals.store_buckets[key] = (counts, math.fsum(seconds))
            self.publish(totals)

    def close(self) -> None:
        """Stop the publishing thread, publishing what is queued."""
        self._stopped.set()
        self.flush()

    def _forked(self) -> None:
        """In a forked child: the queued events are the parent's to publish; a thread anew."""
        queues: list[deque[Any]] = [
            self._queued_requests,
            self._queued_writes,
            self._queued_failures,
            self._queued_refused,
            self._queued_revoked,
            *self._queued_store_calls.values(),
        ]
        for queue in queues:
            queue.clear()
        self._flushing = threading.Lock()  # the fork may have copied it held
        self._start_thread()

    def _start_thread(self) -> None:
        this = weakref.ref(self)
        threading.Thread(
            target=_publish_every,
            args=(this, self.interval, self._stopped),
            daemon=True,
            name="wsgi_session metrics",
        ).start()


def _drain(queue: deque[Any]) -> list[Any]:
    """What ``queue`` holds now, taken out; appends meanwhile stay for the next drain."""
    return list(starmap(queue.popleft, repeat((), len(queue))))  # in C: no Python step per item


def _call(ref: weakref.ref[BufferedMetrics], method: str) -> None:
    found = ref()
    if found is not None:
        getattr(found, method)()


def _publish_every(
    ref: weakref.ref[BufferedMetrics], interval: float, stopped: threading.Event
) -> None:
    while not stopped.wait(interval):
        found = ref()
        if found is None:
            return
        try:
            found.flush()
        except Exception:  # the next interval tries again; the requests never see it
            logging.getLogger("wsgi_session").exception("metrics not published")
        del found
