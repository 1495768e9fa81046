"""Logging a store outage without flooding the log: the first failure, a count, the end.

Every request of an outage fails the same way; a traceback for each says
nothing the first one did not. :class:`OutageLog` logs the first failure with
its traceback, then at most one line per ``interval`` with the number of
requests affected since the last line, and one line when the store answers
again. :class:`RefusedWritesLog` does the same for writes the store answered
but refused (``StoreWriteFailed``: a replica that did not confirm, after a
failover), whose outage is over when a write is acknowledged again, not when
a load succeeds. Thread-safe; each middleware (and so each worker process)
keeps its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

DEFAULT_INTERVAL = 60.0  # seconds between two "still unavailable" lines


class OutageLog:
    """The state of one store as the requests see it: up, or down since when.

    The two lines after the first failure's are class attributes, so that a
    kind of outage words its own.
    """

    still = (
        "session store still unavailable: %d more requests affected "
        "(%d in %.0f s since it failed); last error: %s"
    )
    again = "session store answers again after %.0f s unavailable; %d requests were affected"

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self.down = False  # read without the lock on the fast path: a stale value only delays
        self._since = 0.0
        self._reported = 0.0
        self._total = 0  # requests affected since the outage began
        self._unreported = 0  # of which not yet in a log line

    def failure(self, message: str, exc: BaseException) -> None:
        """A request found the store unavailable; ``message`` says what happens to it."""
        with self._lock:
            now = self.clock()
            first = not self.down
            if first:
                self.down = True
                self._since = self._reported = now
                self._total = 1
                self._unreported = 0
            else:
                self._total += 1
                self._unreported += 1
            due = not first and now - self._reported >= self.interval
            if due:
                count, total, elapsed = self._unreported, self._total, now - self._since
                self._reported = now
                self._unreported = 0
        if first:
            self.logger.error("%s", message, exc_info=exc)
        elif due:
            self.logger.error(self.still, count, total, elapsed, exc)

    def success(self) -> None:
        """A request reached the store: ends the outage, if there was one."""
        if not self.down:
            return
        with self._lock:
            if not self.down:
                return
            self.down = False
            total, elapsed = self._total, self.clock() - self._since
        self.logger.warning(self.again, elapsed, total)


class RefusedWritesLog(OutageLog):
    """Writes the store refused (``StoreWriteFailed``), until one is acknowledged again."""

    still = (
        "session store still refusing writes: %d more requests affected "
        "(%d in %.0f s since the first); last error: %s"
    )
    again = (
        "session store acknowledges writes again after %.0f s of refusals; "
        "%d requests were affected"
    )
