"""How long sessions live: idle and absolute timeouts, refresh, cookie Max-Age."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from wsgi_session.errors import ConfigurationError

DAY = 24 * 3600


@dataclass(frozen=True)
class Lifetime:
    """Timeouts in seconds, enforced from the session's own timestamps.

    ``refresh_interval``: an unchanged session whose record is older than this
    is rewritten with a new access time (and a permanent cookie re-sent), so
    an active reader is not logged out while idle sessions still expire.
    ``refresh_each_request`` re-sends a permanent session's cookie on every
    request that accessed it (Flask's ``SESSION_REFRESH_EACH_REQUEST``).
    """

    idle_timeout: int = 14 * DAY
    absolute_timeout: int | None = None
    refresh_interval: int | None = None
    refresh_each_request: bool = False
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.idle_timeout <= 0:
            raise ConfigurationError(f"idle_timeout must be > 0 seconds, not {self.idle_timeout}")
        if self.absolute_timeout is not None and self.absolute_timeout <= 0:
            raise ConfigurationError(
                f"absolute_timeout must be > 0 seconds or None, not {self.absolute_timeout}"
            )
        if self.refresh_interval is None:
            object.__setattr__(self, "refresh_interval", min(3600, self.idle_timeout // 10))
        elif self.refresh_interval < 0:
            raise ConfigurationError(
                f"refresh_interval must be >= 0 seconds, not {self.refresh_interval}"
            )

    def remaining(self, created: float, accessed: float, idle: int | None, now: float) -> float:
        """Seconds this session has left; zero or less means it has expired."""
        left = accessed + (idle or self.idle_timeout) - now
        if self.absolute_timeout is not None:
            left = min(left, created + self.absolute_timeout - now)
        return left

    def needs_refresh(self, accessed: float, now: float, idle: int | None = None) -> bool:
        """Whether a record written at ``accessed`` is due a rewrite.

        ``idle`` is the session's own timeout: a session that gives itself a
        shorter one than the interval must still be refreshed before it expires.
        """
        interval = self.refresh_interval or 0
        if idle is not None:
            interval = min(interval, idle // 10)
        return now - accessed >= interval
