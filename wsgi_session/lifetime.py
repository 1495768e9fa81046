"""How long sessions live: idle and absolute timeouts, refresh, cookie Max-Age."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from wsgi_session.errors import ConfigurationError, check_seconds
from wsgi_session.session import Session

DAY = 24 * 3600


@dataclass(frozen=True)
class Lifetime:
    """Timeouts in seconds, enforced from the session's own timestamps.

    ``refresh_interval``: an unchanged session whose record is older than this
    is rewritten with a new access time (and a permanent cookie re-sent), so
    an active reader is not logged out while idle sessions still expire;
    ``None`` (kept as given) derives it from the idle timeout
    (:attr:`refresh_after`).
    ``refresh_each_request`` re-sends a permanent session's cookie on every
    request that accessed it (Flask's ``SESSION_REFRESH_EACH_REQUEST``).
    """

    idle_timeout: int = 14 * DAY
    absolute_timeout: int | None = None
    refresh_interval: int | None = None
    refresh_each_request: bool = False
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        check_seconds("idle_timeout", self.idle_timeout, minimum=1)
        if self.absolute_timeout is not None:
            check_seconds("absolute_timeout", self.absolute_timeout, minimum=1)
        if self.refresh_interval is not None:
            check_seconds("refresh_interval", self.refresh_interval, minimum=0)
            if self.refresh_interval >= self.idle_timeout:
                raise ConfigurationError(
                    "{refresh_interval} ({interval} s) must be shorter than "
                    "{idle_timeout} ({idle} s), or active sessions expire",
                    "refresh_interval",
                    "idle_timeout",
                    interval=self.refresh_interval,
                    idle=self.idle_timeout,
                )

    @cached_property  # asked on every request; derived once, not a field: replace() derives anew
    def refresh_after(self) -> int:
        """Seconds after which an unchanged record is rewritten.

        ``refresh_interval`` if given, else a tenth of the idle timeout, at most an hour.
        """
        if self.refresh_interval is None:
            return min(3600, self.idle_timeout // 10)
        return self.refresh_interval

    def remaining(self, created: float, accessed: float, idle: int | None, now: float) -> float:
        """Seconds this session has left; zero or less means it has expired."""
        left = accessed + (idle or self.idle_timeout) - now
        if self.absolute_timeout is not None:
            left = min(left, created + self.absolute_timeout - now)
        return left

    def whole_seconds(self, created: float, accessed: float, idle: int | None) -> int:
        """Whole seconds (at least 1) to keep a session last used at ``accessed``.

        :meth:`remaining` at ``now=accessed``, without its float round trip: the idle
        timeout counts from ``accessed``, so it is the whole seconds left already
        (every write and every permanent cookie asks this).
        """
        seconds = idle or self.idle_timeout  # both checked to be whole and at least 1
        if self.absolute_timeout is not None:
            seconds = min(seconds, math.ceil(created + self.absolute_timeout - accessed))
        return max(1, seconds)

    def left(self, session: Session, now: float) -> float:
        """Seconds ``session`` has left if it is not used again after ``now``."""
        return self.remaining(session.created_at(now), now, session.idle_timeout, now)

    def needs_refresh(self, accessed: float, now: float, idle: int | None = None) -> bool:
        """Whether a record written at ``accessed`` is due a rewrite.

        ``idle`` is the session's own timeout: a session that gives itself a
        shorter one than the interval must still be refreshed before it expires.
        """
        interval = self.refresh_after
        if idle is not None:
            interval = min(interval, idle // 10)
        return now - accessed >= interval
