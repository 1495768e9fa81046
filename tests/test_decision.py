"""The commit decision on its own: what each request writes and which cookie goes out.

No store and no HTTP: a session opened on a hand-made origin, the decision
asked at a chosen moment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from helpers import calls_to

from wsgi_session import Lifetime, Origin, Session
from wsgi_session.decision import (
    Action,
    Cookie,
    Outcome,
    Plan,
    cookie_after,
    decide,
    must_resend,
    plain_read,
    refresh_due,
)
from wsgi_session.serialization import dumps

NOW = 1_700_000_000.0
REFRESH = 60  # seconds after which an unchanged record is rewritten
LIFETIME = Lifetime(idle_timeout=3600, refresh_interval=REFRESH, clock=lambda: NOW)

STORED = Origin(
    id="stored-id",
    new=False,
    data={"user": "alice"},
    text=dumps({"user": "alice"}),
    created=NOW - 1000,
    accessed=NOW - 10,  # refreshed 10 s ago: no refresh due
)
NO_COOKIE = Origin("fresh-id", created=NOW, accessed=NOW)
BAD_COOKIE = replace(NO_COOKIE, stale_cookie=True)  # verified, but named no live session

Change = Callable[[Session], Any]


def read(session: Session) -> None:
    session.get("user")


def write(session: Session) -> None:
    session["cart"] = [1]


def clear(session: Session) -> None:
    session.clear()


def regenerate(session: Session) -> None:
    session.regenerate()


def destroy(session: Session) -> None:
    session.destroy()


def destroy_then_write(session: Session) -> None:
    session.destroy()
    session["user"] = "bob"


def make_permanent(session: Session) -> None:
    session.permanent = True


def append_in_place(session: Session) -> None:
    session["items"].append(2)


def session_on(origin: Origin, change: Change) -> Session:
    # Each session gets its own copy: the session changes the origin's data in place.
    session = Session(lambda: replace(origin, data=dict(origin.data)))
    change(session)
    return session


DECISIONS = pytest.mark.parametrize(
    ("origin", "change", "lifetime", "action"),
    [
        # No stored session (None: nothing to write, no cookie)
        (NO_COOKIE, read, LIFETIME, None),
        (BAD_COOKIE, read, LIFETIME, "expire"),
        (NO_COOKIE, write, LIFETIME, "create"),
        (BAD_COOKIE, write, LIFETIME, "create"),
        (NO_COOKIE, regenerate, LIFETIME, None),
        # The store was down when it loaded (on_store_error="degrade"): changes dropped
        (replace(NO_COOKIE, degraded=True), write, LIFETIME, None),
        (replace(BAD_COOKIE, degraded=True), read, LIFETIME, None),
        # A stored session, unchanged
        (STORED, read, LIFETIME, None),
        (replace(STORED, accessed=NOW - REFRESH), read, LIFETIME, "refresh"),
        (replace(STORED, resign=True), read, LIFETIME, "resend"),
        (
            replace(STORED, permanent=True),
            read,
            replace(LIFETIME, refresh_each_request=True),
            "resend",
        ),
        (STORED, read, replace(LIFETIME, refresh_each_request=True), None),
        # A session's own idle timeout shortens the refresh interval (a tenth of it).
        (replace(STORED, idle_timeout=50), read, LIFETIME, "refresh"),
        # A stored session, changed
        (STORED, write, LIFETIME, "update"),
        (STORED, make_permanent, LIFETIME, "update"),
        # ... or set to what it was: nothing differs
        (STORED, lambda session: setattr(session, "permanent", False), LIFETIME, None),
        (STORED, lambda session: setattr(session, "idle_timeout", None), LIFETIME, None),
        (
            replace(STORED, data={"items": [1]}, text=dumps({"items": [1]})),
            append_in_place,
            LIFETIME,
            "update",
        ),
        (STORED, clear, LIFETIME, "update"),  # saved empty, by compare-and-set
        (STORED, regenerate, LIFETIME, "move"),
        (STORED, destroy_then_write, LIFETIME, "move"),
        (STORED, destroy, LIFETIME, "delete"),
    ],
)


@DECISIONS
def test_decide(origin: Origin, change: Change, lifetime: Lifetime, action: Action | None) -> None:
    session = session_on(origin, change)
    plan = decide(session, session.origin, lifetime, NOW)
    assert (plan and plan.action) == action


@DECISIONS
def test_the_plain_read_fast_path_is_its_predicates(
    origin: Origin,
    change: Change,
    lifetime: Lifetime,
    action: Action | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # decide() serializes on every path but the plain read's (and a degraded
    # session's, whose changes are dropped): plain_read's inlined form is true
    # exactly when the readable predicates say so.
    session = session_on(origin, change)
    readable = (
        not origin.new
        and session.unchanged()
        and not refresh_due(origin, lifetime, NOW)
        and not must_resend(origin, lifetime)
    )
    serialized = calls_to(monkeypatch, Session, "serialize")
    decide(session, session.origin, lifetime, NOW)
    assert plain_read(session, origin, lifetime, NOW) is readable
    assert bool(serialized) is (not readable and not origin.degraded)


EVERY_CHANGE = {
    "set": write,
    "delete": lambda session: session.__delitem__("user"),
    "pop": lambda session: session.pop("user"),
    "popitem": lambda session: session.popitem(),
    "setdefault": lambda session: session.setdefault("theme", "dark"),
    "update": lambda session: session.update(theme="dark"),
    "clear": clear,
    "regenerate": regenerate,
    "destroy": destroy,
    "permanent": make_permanent,
    "idle_timeout": lambda session: setattr(session, "idle_timeout", 30),
    "modified": lambda session: setattr(session, "modified", True),
}


@pytest.mark.parametrize("change", EVERY_CHANGE.values(), ids=EVERY_CHANGE)
def test_every_change_is_seen_by_the_plain_read_fast_path(change: Change) -> None:
    # The fast path asks what changed only once a change was made: each kind counts.
    session = session_on(STORED, change)
    assert not session.unchanged()
    assert decide(session, session.origin, LIFETIME, NOW) is not None


def test_the_plain_read_is_decided_without_serializing(monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_on(STORED, read)

    def no(self: Session) -> str:
        raise AssertionError("serialized")

    monkeypatch.setattr(Session, "serialize", no)
    assert decide(session, session.origin, LIFETIME, NOW) is None


def test_the_plan_carries_the_data_to_write() -> None:
    session = session_on(STORED, write)
    plan = decide(session, session.origin, LIFETIME, NOW)
    assert plan is not None
    assert (plan.text, plan.now) == (dumps({"user": "alice", "cart": [1]}), NOW)


def plan(action: Action, origin: Origin = STORED, change: Change = read) -> Plan:
    return Plan(action, session_on(origin, change), "", NOW)


BROWSER_SESSION = STORED
PERMANENT = replace(STORED, permanent=True)
RESIGNED = replace(STORED, resign=True)
WRITTEN, EMPTIED, OUTRUN = "written", "emptied", "outrun"
MOVED, DESTROYED = "moved", "destroyed"


@pytest.mark.parametrize(
    ("action", "origin", "change", "outcome", "signed_id_cookie", "data_cookie"),
    [
        # Plans whose cookie does not depend on anything else
        ("resend", STORED, read, WRITTEN, "send", "send"),
        ("create", NO_COOKIE, write, WRITTEN, "send", "send"),
        ("move", STORED, regenerate, WRITTEN, "send", "send"),
        ("delete", STORED, destroy, WRITTEN, "expire", "expire"),
        ("expire", BAD_COOKIE, read, WRITTEN, "expire", "expire"),
        # A refresh: a browser-session id cookie has no expiry to push back
        ("refresh", BROWSER_SESSION, read, WRITTEN, "keep", "send"),
        ("refresh", PERMANENT, read, WRITTEN, "send", "send"),
        ("refresh", RESIGNED, read, WRITTEN, "send", "send"),
        ("refresh", PERMANENT, read, OUTRUN, "keep", "keep"),
        # An update re-sends the cookie, with the attributes configured now (as Flask, Django)
        ("update", BROWSER_SESSION, write, WRITTEN, "send", "send"),
        ("update", BROWSER_SESSION, make_permanent, WRITTEN, "send", "send"),
        ("update", PERMANENT, write, WRITTEN, "send", "send"),
        ("update", RESIGNED, write, WRITTEN, "send", "send"),
        # ... it stopped being permanent: a new cookie without Max-Age
        (
            "update",
            PERMANENT,
            lambda session: setattr(session, "permanent", False),
            WRITTEN,
            "send",
            "send",
        ),
        ("update", PERMANENT, clear, EMPTIED, "expire", "expire"),
        ("update", PERMANENT, write, MOVED, "keep", "keep"),
        ("update", PERMANENT, write, DESTROYED, "expire", "expire"),
    ],
)
def test_cookie_after(
    action: Action,
    origin: Origin,
    change: Change,
    outcome: Outcome,
    signed_id_cookie: Cookie,
    data_cookie: Cookie,
) -> None:
    done = plan(action, origin, change)
    assert cookie_after(done, outcome, cookie_holds_data=False) == signed_id_cookie
    assert cookie_after(done, outcome, cookie_holds_data=True) == data_cookie
