"""What every backend is: open a cookie into a session; carry out the commit decision."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, Protocol, runtime_checkable

from wsgi_session.backends.owners import OwnerTracking
from wsgi_session.backends.reporting import Reporting
from wsgi_session.cookies import KeyRing
from wsgi_session.decision import Outcome, Plan, cookie_after, decide
from wsgi_session.lifetime import Lifetime
from wsgi_session.metrics.audit import AuditLog
from wsgi_session.metrics.base import NO_METRICS, Metrics
from wsgi_session.session import Origin, Session


class CookieUpdate(NamedTuple):
    """What the response must do with the cookie: set ``value``, or expire it (``None``).

    ``check``, if given, is called with the complete Set-Cookie header before it
    is sent and may raise (the cookie store's size guard needs the attributes).
    A named tuple, not a frozen dataclass: one is made by every write, and a
    frozen dataclass sets each field through ``object.__setattr__``.
    """

    value: str | None
    max_age: int | None = None
    check: Callable[[str], None] | None = None
    # An adopted session's old cookie (name, path, domain): expired too where it is not ours.
    replaces: tuple[str, str | None, str | None] | None = None


EXPIRE = CookieUpdate(None)


class Backend(Protocol):
    """Loads a session from its cookie; persists it and says what cookie to send."""

    def open(self, cookie: str | None) -> Origin:
        """Load what ``cookie`` names. A bad cookie yields a fresh origin, never an error."""
        ...

    def may_be_permanent(self, cookie: str) -> bool:
        """``False`` if ``cookie`` says, without the store, that its session is not permanent.

        Asked by a request that never used its session when a permanent
        session's cookie is re-sent on every request: ``False`` spares the load.
        """
        ...

    def commit(self, session: Session) -> CookieUpdate | None:
        """Persist ``session``; ``None`` means the response needs no Set-Cookie.

        A session whose origin is ``degraded`` (the store was down when it
        loaded) must be left alone: its changes are dropped, and no cookie is
        sent. :class:`BaseBackend` does so through :func:`decide`.
        """
        ...


@runtime_checkable
class BackendFactory(Protocol):
    """A store that brings its own backend (the cookie store does)."""

    def make_backend(self, keys: KeyRing, lifetime: Lifetime) -> Backend: ...


class BaseBackend:
    """The commit flow every backend shares: decide, execute, then the cookie.

    Subclasses say how a plan is carried out (:meth:`execute`) and what the
    cookie they set holds (:meth:`send`); the decision is not theirs.
    """

    cookie_holds_data = False  # True when the cookie is where the session lives
    metrics: Metrics = NO_METRICS  # see report_to()
    owners: OwnerTracking | None = None  # whose sessions are whose, for the audit log

    def __init__(self, lifetime: Lifetime) -> None:
        self.lifetime = lifetime
        self.clock = lifetime.clock
        # What commit() decides and writes with: the decision and execute, or
        # report_to()'s wrappers, so that with reporting off commit() checks nothing.
        self.decide: Callable[[Session, Origin, Lifetime, float], Plan | None] = decide
        self.carry_out: Callable[[Plan], Outcome] = self.execute

    def may_be_permanent(self, cookie: str) -> bool:
        """Unknown until loaded, unless a backend's cookie says (see :class:`Backend`)."""
        return True

    def commit(self, session: Session) -> CookieUpdate | None:
        """Persist ``session``; ``None`` means the response needs no Set-Cookie."""
        plan = self.decide(session, session.origin, self.lifetime, self.clock())
        if plan is None:
            return None
        outcome = self.carry_out(plan)
        cookie = cookie_after(plan, outcome, cookie_holds_data=self.cookie_holds_data)
        if cookie == "keep":
            return None
        if cookie == "expire":
            return EXPIRE
        return self.send(plan)

    def execute(self, plan: Plan) -> Outcome:
        """Carry out the writes ``plan`` asks for; raise if the store did not acknowledge."""
        raise NotImplementedError

    def report_to(self, metrics: Metrics, audit: AuditLog | None = None) -> Reporting:
        """Report each commit to ``metrics`` and, if given, the ``audit`` log."""
        self.metrics = metrics
        reporting = Reporting(self.execute, metrics, audit, self.owners)
        self.decide = reporting.decide
        self.carry_out = reporting.carry_out
        return reporting

    def send(self, plan: Plan) -> CookieUpdate:
        """The cookie to set for the session ``plan`` kept."""
        raise NotImplementedError

    def max_age(self, plan: Plan) -> int | None:
        """A permanent cookie's Max-Age: as long as the session can live; else none."""
        session = plan.session
        if not session.permanent:
            return None
        if plan.action == "resend" and not self.cookie_holds_data:
            # Nothing was written, so the record keeps its idle clock: the cookie
            # expires with it, not later (the refresh interval moves both on).
            origin = session.origin
            left = self.lifetime.remaining(
                origin.created, origin.accessed, origin.idle_timeout, plan.now
            )
            return max(1, math.ceil(left))
        return self.lifetime.whole_seconds(
            session.created_at(plan.now), plan.now, session.idle_timeout
        )
