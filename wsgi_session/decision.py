"""What a request writes and which cookie goes out: the whole decision, with no I/O.

When the response starts, :func:`decide` turns the session into a :class:`Plan`
(``None``: nothing to write, no cookie to send), the backend carries it out
and reports an :class:`Outcome` (a compare-and-set may find that a concurrent
request got there first), and :func:`cookie_after` says what to do with the
cookie::

    plan      when                                        the store          the cookie
    None      unchanged, no refresh due, nothing to       -                  -
              resend; or new, empty and no cookie came;
              or the store was down when it loaded
              (degraded: its changes are dropped)
    resend    unchanged, no refresh due, but the cookie   -                  sent
              must go out again (fallback key, refresh
              on every request)
    refresh   unchanged, record older than the refresh    rewritten (CAS),   by the outcome
              interval                                    new access time
    create    new session with data                       created            sent
    update    changed, or cleared, under the same id      saved (CAS),       by the outcome
                                                          merging
    move      data under a new id (regenerate, or         created; the old   sent
              destroy then set)                           one retired
    delete    no data under a new id (destroyed)          old one deleted    expired
    expire    new and empty, but the cookie verified and  -                  expired
              named no live session (one that did not
              verify is left alone: a server holding the
              right key may still find its session)

After a write under the session's own id (refresh, update) the outcome decides::

    written    as planned: an update sends the cookie (with the attributes
               configured now, as Flask and Django do); a refresh sends it if
               the cookie holds the data (cookie store), was signed with a
               fallback key, or has a Max-Age to push back or to drop
    merged     an update re-applied onto a concurrent write, whose response sends
               the cookie for the flags it set: sent only as a refresh would be
    emptied    written, and what is stored now holds no data: expired
    outrun     a concurrent write refreshed the record first: nothing (it may
               have retired this id; its own response sends the cookie)
    moved      a concurrent login moved the session: nothing (its response
               sends the new id)
    withheld   a concurrent login moved the session to another owner (a
               login from an anonymous session, a logout that kept a new
               id): this request's changes are dropped, as it loaded the
               session before; nothing (the login's response sends the new id)
    destroyed  a concurrent logout deleted it: expired

The cookie store keeps nothing on the server: its "store" is the cookie, so
every write sends one (``cookie_holds_data``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from wsgi_session.lifetime import Lifetime
from wsgi_session.session import EMPTY, Origin, Session

# Plain strings, not enums: an enum member costs a slow attribute lookup on
# Python 3.11, and the decision runs on every request that uses its session.
Action = Literal["resend", "refresh", "create", "update", "move", "delete", "expire"]
Outcome = Literal["written", "merged", "emptied", "outrun", "moved", "withheld", "destroyed"]
Cookie = Literal["keep", "send", "expire"]


class Plan(NamedTuple):
    """What to do with ``session``, whose data serializes to ``text``, at ``now``."""

    action: Action
    session: Session
    text: str
    now: float


# -- the predicates ----------------------------------------------------------------


def plain_read(session: Session, origin: Origin, lifetime: Lifetime, now: float) -> bool:
    """A stored session this request certainly left as it was: the common read.

    Decided without serializing the data whenever it holds only plain values.
    """
    # The common read, so the predicates are inlined here. Equal to:
    #     not origin.new and session.unchanged()
    #     and not refresh_due(origin, lifetime, now) and not must_resend(origin, lifetime)
    # (tests/test_decision.py holds the two to the same answers).
    if origin.new or origin.resign or (origin.permanent and lifetime.refresh_each_request):
        return False  # new, or must_resend
    interval = lifetime.refresh_after  # refresh_due: Lifetime.needs_refresh
    idle = origin.idle_timeout
    if idle is not None:
        interval = min(interval, idle // 10)
    return now - origin.accessed < interval and session.unchanged()


# The next two are asked about unchanged sessions only, whose flags are still
# the origin's: reading them there spares a call on every request.


def refresh_due(origin: Origin, lifetime: Lifetime, now: float) -> bool:
    """The stored access time is old enough to rewrite (so idle sessions still expire)."""
    return lifetime.needs_refresh(origin.accessed, now, origin.idle_timeout)


def must_resend(origin: Origin, lifetime: Lifetime) -> bool:
    """The cookie goes out anyway: re-signed, or a permanent one's Max-Age pushed back."""
    return origin.resign or (origin.permanent and lifetime.refresh_each_request)


def moved(session: Session) -> bool:
    """The session has a new id: regenerated, or destroyed."""
    return session.id != session.origin.id


def cookie_outdated_by_write(session: Session) -> bool:
    """After a write under the same id, a signed-id cookie must still be replaced.

    A fallback key signed it; or it has a Max-Age to push back; or the session
    stopped being permanent, and without a new cookie (no Max-Age) the browser
    would keep the old expiry.
    """
    origin = session.origin
    return origin.resign or session.permanent or origin.permanent


# -- the decision ------------------------------------------------------------------


def decide(session: Session, origin: Origin, lifetime: Lifetime, now: float) -> Plan | None:
    """The plan for an accessed ``session``, loaded as ``origin``, at the end of its request.

    ``None``: nothing to do.
    """
    if plain_read(session, origin, lifetime, now):
        return None
    if origin.degraded:
        return None
    text = session.serialize()
    action: Action
    if text == EMPTY and (origin.new or moved(session)):
        if not origin.new:
            action = "delete"
        elif origin.stale_cookie:
            action = "expire"
        else:
            return None
    elif origin.new:
        action = "create"
    elif moved(session):
        action = "move"
    elif session.differs_from_origin(text):
        # A cleared session is saved empty (loads treat that as no session), not
        # deleted: a delete cannot compare-and-set, and would lose the keys a
        # concurrent request set meanwhile.
        action = "update"
    elif refresh_due(origin, lifetime, now):
        action = "refresh"
    elif must_resend(origin, lifetime):
        action = "resend"
    else:
        return None
    return Plan(action, session, text, now)


_COOKIE: dict[Action, Cookie] = {
    "resend": "send",
    "create": "send",
    # A write re-sends the cookie with the attributes the configuration gives
    # now, as Flask and Django do for a modified session.
    "update": "send",
    "move": "send",
    "delete": "expire",
    "expire": "expire",
}

_COOKIE_AFTER_CONFLICT: dict[Outcome, Cookie] = {
    "emptied": "expire",
    "outrun": "keep",
    "moved": "keep",
    "withheld": "keep",
    "destroyed": "expire",
}


def cookie_after(plan: Plan, outcome: Outcome, *, cookie_holds_data: bool) -> Cookie:
    """The cookie to send once ``plan`` was carried out with ``outcome``.

    ``cookie_holds_data``: the cookie is where the session lives (the cookie
    store), so every write is a new cookie.
    """
    if outcome == "written":
        fixed = _COOKIE.get(plan.action)
        if fixed is not None:
            return fixed
    elif outcome != "merged":
        return _COOKIE_AFTER_CONFLICT[outcome]
    # A refresh, or a merged update, under the id the client already holds.
    if cookie_holds_data or cookie_outdated_by_write(plan.session):
        return "send"
    return "keep"
