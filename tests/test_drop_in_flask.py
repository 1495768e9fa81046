"""Flask's own session semantics, kept by the adapter: through real Flask apps and test clients.

Assigning marks the session modified; a cookie that does not verify is left
alone; ``SESSION_REFRESH_EACH_REQUEST`` re-sends a permanent cookie on every
request that carries it, touched or not.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, request, session
from flask.globals import request_ctx
from flask_wtf.csrf import CSRFProtect, generate_csrf
from helpers import SECRET, CountingStore, FakeClock, make, one_cookie, set_cookies, stored_data
from helpers import stored_record as record_of

from wsgi_session import MemoryStore
from wsgi_session import Session as RawSession
from wsgi_session.flask import Session

OTHER_SECRET = "other-secret-fedcba9876543210fedcba9876543210"
LIFETIME = 3600
REFRESH = 60
WAIT = 10  # seconds any thread of a test may wait for another


def flask_app(store: Any, clock: FakeClock, secret: str = SECRET, **config: Any) -> Flask:
    app = Flask(__name__)
    app.testing = True
    app.config.update(
        SECRET_KEY=secret, PERMANENT_SESSION_LIFETIME=timedelta(seconds=LIFETIME), **config
    )
    Session(app, store=store, clock=clock, refresh_interval=REFRESH)

    @app.get("/nothing")
    def nothing() -> str:
        return "ok"

    @app.get("/read")
    def read() -> dict[str, Any]:
        return dict(session)

    @app.get("/login")
    def login() -> str:
        session.permanent = True
        session["user"] = "alice"
        return "ok"

    @app.get("/browser-session")
    def browser_session() -> str:
        session["user"] = "alice"
        return "ok"

    @app.get("/same")
    def same() -> dict[str, bool]:
        before = session.modified
        session["user"] = session["user"]
        return {"before": before, "after": session.modified}

    return app


@pytest.fixture
def store(clock: FakeClock) -> CountingStore:
    """A memory store on the test's clock that counts the calls made to it."""
    return CountingStore(MemoryStore(clock=clock))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- assigning marks the session modified ------------------------------------------


def test_assigning_the_same_value_marks_modified_writes_and_sends_the_cookie(
    store: CountingStore, clock: FakeClock
) -> None:
    app = flask_app(store, clock, SESSION_REFRESH_EACH_REQUEST=False)
    client = app.test_client()
    client.get("/browser-session")
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    store.calls.clear()

    response = client.get("/same")

    assert response.json == {"before": False, "after": True}
    assert store.calls["save"] == 1
    cookie = one_cookie(response)
    assert cookie.attrs["samesite"] == "Strict"  # the attributes configured now
    assert "max-age" not in cookie.attrs  # still a browser-session cookie


def test_reading_alone_writes_nothing_and_sends_no_cookie(
    store: CountingStore, clock: FakeClock
) -> None:
    client = flask_app(store, clock).test_client()
    client.get("/browser-session")
    store.calls.clear()

    response = client.get("/read")

    assert response.json == {"user": "alice"}
    assert store.calls["save"] == 0
    assert set_cookies(response) == []
    assert response.headers["Vary"] == "Cookie"


def test_an_assignment_of_the_loaded_value_wins_over_a_concurrent_write(
    store: CountingStore, clock: FakeClock
) -> None:
    """The merge treats ``session[k] = v`` as this request's write of ``k``, even when
    ``v`` is what it loaded: the later request's value stands, as it would in Flask."""
    app = flask_app(store, clock, SESSION_REFRESH_EACH_REQUEST=False)
    loaded, go = threading.Event(), threading.Event()

    @app.get("/slow-same")
    def slow_same() -> str:
        value = session["user"]
        loaded.set()
        assert go.wait(WAIT)
        session["user"] = value
        return "ok"

    @app.get("/rename")
    def rename() -> str:
        session["user"] = "bob"
        return "ok"

    client = app.test_client()
    cookie = one_cookie(client.get("/browser-session"))
    answers: list[int] = []
    slow = threading.Thread(target=lambda: answers.append(client.get("/slow-same").status_code))
    slow.start()
    assert loaded.wait(WAIT)
    assert client.get("/rename").status_code == 200
    go.set()
    slow.join(WAIT)

    assert answers == [200]
    assert stored_data(store, cookie.session_id) == {"user": "alice"}


# -- a cookie that does not verify is left alone -----------------------------------


def test_a_server_without_the_key_leaves_the_cookie_and_the_record_alone(
    store: CountingStore, clock: FakeClock
) -> None:
    """A rolling deploy: one server already has the new key, one does not yet."""
    new_server = flask_app(store, clock, secret=SECRET)
    old_server = flask_app(store, clock, secret=OTHER_SECRET)
    client = new_server.test_client()
    cookie = one_cookie(client.get("/login"))
    stale = old_server.test_client()
    stale.set_cookie("session", cookie.value)

    for path in ("/nothing", "/read"):
        response = stale.get(path)
        assert set_cookies(response) == [], path
    assert stale.get("/read").json == {}

    assert stored_data(store, cookie.session_id) == {"user": "alice"}
    assert client.get("/read").json == {"user": "alice"}
    # A server that holds the key as a fallback finds it too, and re-signs the cookie.
    fallback_server = flask_app(
        store, clock, secret=OTHER_SECRET, SECRET_KEY_FALLBACKS=[SECRET]
    ).test_client()
    fallback_server.set_cookie("session", cookie.value)
    response = fallback_server.get("/read")
    assert response.json == {"user": "alice"}
    assert one_cookie(response).session_id == cookie.session_id


def test_a_write_through_an_unverifiable_cookie_starts_a_new_session(
    store: CountingStore, clock: FakeClock
) -> None:
    new_server = flask_app(store, clock, secret=SECRET)
    cookie = one_cookie(new_server.test_client().get("/login"))
    stale = flask_app(store, clock, secret=OTHER_SECRET).test_client()
    stale.set_cookie("session", cookie.value)

    replaced = one_cookie(stale.get("/browser-session"))

    assert replaced.session_id != cookie.session_id
    assert stored_data(store, cookie.session_id) == {"user": "alice"}  # never looked up


def test_a_verified_cookie_of_an_expired_session_is_expired(
    store: CountingStore, clock: FakeClock
) -> None:
    client = flask_app(store, clock).test_client()
    client.get("/login")
    clock.advance(LIFETIME + 1)

    response = client.get("/read")

    assert response.json == {}
    assert one_cookie(response).expires_now


# -- SESSION_REFRESH_EACH_REQUEST ---------------------------------------------------


def test_refresh_each_request_resends_a_permanent_cookie_the_view_never_touched(
    store: CountingStore, clock: FakeClock
) -> None:
    client = flask_app(store, clock).test_client()
    cookie = one_cookie(client.get("/login"))
    clock.advance(10)
    store.calls.clear()

    response = client.get("/nothing")

    resent = one_cookie(response)
    assert resent.value == cookie.value
    assert response.headers["Vary"] == "Cookie"
    # The record was not rewritten (10 s < the refresh interval): the cookie
    # expires with it, not later.
    assert dict(store.calls) == {"load": 1}
    assert resent.attrs["max-age"] == str(LIFETIME - 10)
    record = record_of(store, cookie.session_id)
    assert record is not None
    assert record.accessed + LIFETIME == clock.now + int(resent.attrs["max-age"])


def _session_object() -> Any:
    """The request's session object, got without the proxy (which marks it accessed)."""
    context = vars(request_ctx._get_current_object())
    return context["_session"] if "_session" in context else context["session"]  # Flask < 3.1


def test_session_accessed_and_vary_say_what_the_view_did_when_the_cookie_is_resent(
    store: CountingStore, clock: FakeClock
) -> None:
    """The adapter loads the record to re-send a permanent cookie; the view did not use it.

    Read from the session object itself: ``flask.session.accessed`` would not do,
    since Flask 3.1 marks the session accessed when the proxy is used.
    """
    app = flask_app(store, clock)
    accessed: list[bool] = []

    @app.teardown_request
    def note(error: BaseException | None) -> None:  # after the response started
        accessed.append(request.environ["wsgi_session"].accessed)

    client = app.test_client()
    cookie = one_cookie(client.get("/login"))
    accessed.clear()

    with client:
        response = client.get("/nothing")
        assert not request.environ["wsgi_session"].accessed  # in the kept context, too
    assert accessed and not any(accessed)  # run again as the kept context ends
    assert one_cookie(response).value == cookie.value
    # The cookie's response varies on it, as Flask's does since CVE-2023-30861 (a
    # shared cache must not hand one user's Set-Cookie to the next).
    assert response.headers["Vary"] == "Cookie"
    accessed.clear()
    assert "Vary" in client.get("/read").headers and accessed == [True]  # a view that reads

    # What Flask's own sessions answer for the same requests.
    builtin = Flask(__name__)
    builtin.secret_key = SECRET

    @builtin.get("/login")
    def login() -> str:
        session.permanent = True
        session["user"] = "alice"
        return "ok"

    @builtin.get("/nothing")
    def nothing() -> str:
        return "ok"

    @builtin.teardown_request
    def note_builtin(error: BaseException | None) -> None:
        accessed.append(_session_object().accessed)

    own = builtin.test_client()
    own.get("/login")
    accessed.clear()
    response = own.get("/nothing")
    assert accessed == [False]
    assert set_cookies(response) and response.headers["Vary"] == "Cookie"


def test_refresh_each_request_past_the_interval_moves_record_and_cookie_on_together(
    store: CountingStore, clock: FakeClock
) -> None:
    client = flask_app(store, clock).test_client()
    cookie = one_cookie(client.get("/login"))
    clock.advance(REFRESH + 5)

    resent = one_cookie(client.get("/nothing"))

    assert resent.attrs["max-age"] == str(LIFETIME)
    record = record_of(store, cookie.session_id)
    assert record is not None
    assert record.accessed == clock.now
    # Active past the first lifetime: still logged in.
    for _ in range(3):
        clock.advance(LIFETIME - 100)
        assert one_cookie(client.get("/nothing")).attrs["max-age"] == str(LIFETIME)
    assert client.get("/read").json == {"user": "alice"}


def test_refresh_each_request_leaves_a_browser_session_cookie_alone(
    store: CountingStore, clock: FakeClock
) -> None:
    client = flask_app(store, clock).test_client()
    client.get("/browser-session")

    response = client.get("/nothing")

    assert set_cookies(response) == []
    assert "Vary" not in response.headers


def test_without_refresh_each_request_an_untouched_request_is_free(
    store: CountingStore, clock: FakeClock
) -> None:
    client = flask_app(store, clock, SESSION_REFRESH_EACH_REQUEST=False).test_client()
    client.get("/login")
    clock.advance(REFRESH + 5)
    store.calls.clear()

    response = client.get("/nothing")

    assert store.total == 0
    assert set_cookies(response) == []
    assert "Vary" not in response.headers


def test_refresh_each_request_without_a_cookie_costs_nothing(
    store: CountingStore, clock: FakeClock
) -> None:
    response = flask_app(store, clock).test_client().get("/nothing")

    assert store.total == 0
    assert set_cookies(response) == []


def test_refresh_each_request_survives_a_store_outage_on_an_untouched_page(
    store: CountingStore, clock: FakeClock
) -> None:
    """Fault injected: the in-process store cannot fail on its own."""
    client = flask_app(store, clock).test_client()
    client.get("/login")
    store.fail = {"load"}

    response = client.get("/nothing")

    assert response.status_code == 200
    assert set_cookies(response) == []


# -- the core option, for plain WSGI ------------------------------------------------


def permanent_login(raw: RawSession) -> None:
    raw.permanent = True
    raw["user"] = "alice"


def test_core_refresh_each_request_resends_without_the_app_touching_the_session() -> None:
    clock = FakeClock()
    routes = {"login": permanent_login}
    client, _, _ = make(
        routes,
        refresh_each_request=True,
        idle_timeout=LIFETIME,
        refresh_interval=REFRESH,
        clock=clock,
    )
    cookie = one_cookie(client.get("/login"))

    resent = one_cookie(client.get("/nothing"))
    assert resent.value == cookie.value
    assert resent.attrs["max-age"] == str(LIFETIME)

    quiet, _, quiet_store = make(routes, idle_timeout=LIFETIME, clock=clock)
    quiet.get("/login")
    quiet_store.calls.clear()
    response = quiet.get("/nothing")
    assert quiet_store.total == 0
    assert set_cookies(response) == []


def test_core_untouched_browser_session_with_refresh_each_request_sends_nothing() -> None:
    client, _, _ = make(refresh_each_request=True)
    client.get("/set")

    response = client.get("/nothing")

    assert set_cookies(response) == []
    assert "Vary" not in response.headers


# -- the secret key, wherever Flask finds it --------------------------------------------


class KeyedByClass(Flask):
    secret_key = SECRET  # app.secret_key, not app.config["SECRET_KEY"]


class KeyedByProperty(Flask):
    @property
    def secret_key(self) -> str:  # type: ignore[override]
        return SECRET


@pytest.mark.parametrize("app_class", [KeyedByClass, KeyedByProperty], ids=["class", "property"])
def test_flask_wtf_csrf_round_trips_on_an_app_whose_class_sets_the_secret_key(
    store: CountingStore, clock: FakeClock, app_class: type[Flask]
) -> None:
    app = app_class(__name__)
    app.testing = True
    assert app.config["SECRET_KEY"] is None  # only app.secret_key has it, as Flask allows
    Session(app, store=store, clock=clock)
    CSRFProtect(app)

    @app.route("/form", methods=["GET", "POST"])
    def form() -> str:
        return generate_csrf() if request.method == "GET" else "posted"

    client = app.test_client()
    response = client.get("/form")
    assert response.status_code == 200
    token = response.text
    cookie = one_cookie(response)
    assert "csrf_token" in stored_data(store, cookie.session_id)

    assert client.post("/form", data={"csrf_token": token}).text == "posted"
    assert client.post("/form", data={"csrf_token": "forged"}).status_code == 400
    # The session cookie is signed with the class's key: an app keyed otherwise cannot read it.
    other = flask_app(store, clock, secret=OTHER_SECRET).test_client()
    other.set_cookie("session", cookie.value)
    assert other.get("/read").json == {}
    same_key = flask_app(store, clock, secret=SECRET).test_client()
    same_key.set_cookie("session", cookie.value)
    assert "csrf_token" in same_key.get("/read").json
