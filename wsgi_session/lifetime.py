"""How long sessions live: idle and absolute timeouts, refresh, cookie Max-Age."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsgi_session.errors import ConfigurationError

if TYPE_CHECKING:
    from wsgi_session.session import Session

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
        _check_seconds("idle_timeout", self.idle_timeout, minimum=1)
        if self.absolute_timeout is not None:
            _check_seconds("absolute_timeout", self.absolute_timeout, minimum=1)
        if self.refresh_interval is None:
            object.__setattr__(self, "refresh_interval", min(3600, self.idle_timeout // 10))
        else:
            _check_seconds("refresh_interval", self.refresh_interval, minimum=0)
            if self.refresh_interval >= self.idle_timeout:
                raise ConfigurationError(
                    f"refresh_interval ({self.refresh_interval} s) must be shorter than "
                    f"idle_timeout ({self.idle_timeout} s), or active sessions expire"
                )

    def remaining(self, created: float, accessed: float, idle: int | None, now: float) -> float:
        """Seconds this session has left; zero or less means it has expired."""
        left = accessed + (idle or self.idle_timeout) - now
        if self.absolute_timeout is not None:
            left = min(left, created + self.absolute_timeout - now)
        return left

    def whole_seconds(self, created: float, accessed: float, idle: int | None) -> int:
        """Whole seconds (at least 1) to keep a session last used at ``accessed``."""
        return max(1, math.ceil(self.remaining(created, accessed, idle, accessed)))

    def left(self, session: Session, now: float) -> float:
        """Seconds ``session`` has left if it is not used again after ``now``."""
        return self.remaining(session.created_at(now), now, session.idle_timeout, now)

    def needs_refresh(self, accessed: float, now: float, idle: int | None = None) -> bool:
        """Whether a record written at ``accessed`` is due a rewrite.

        ``idle`` is the session's own timeout: a session that gives itself a
        shorter one than the interval must still be refreshed before it expires.
        """
        interval = self.refresh_interval or 0
        if idle is not None:
            interval = min(interval, idle // 10)
        return now - accessed >= interval


MAX_SECONDS = 100 * 365 * DAY  # beyond this, timestamps overflow what stores and cookies hold


def _check_seconds(setting: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(
            f"{setting} must be a whole number of seconds, not {type(value).__name__} {value!r}"
        )
    if not minimum <= value <= MAX_SECONDS:
        raise ConfigurationError(
            f"{setting} must be between {minimum} and {MAX_SECONDS} seconds, not {value}"
        )
