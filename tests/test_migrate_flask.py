"""Adopting Flask's built-in signed cookie sessions (``migrate_from="flask"``).

The old application is a real Flask app on Flask's own sessions with a real
Flask-Login login; the new one is the same application with wsgi_session. The
browser's cookie goes from one to the other, as it does across a deploy.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask, request, session
from flask.testing import FlaskClient
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user
from helpers import CountingStore, FakeClock, set_cookies
from itsdangerous import TimestampSigner

from wsgi_session import MemoryStore
from wsgi_session.flask import Session

SECRET = "flask-app-secret-0123456789abcdef0123456789"


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def make_app(**config: Any) -> Flask:
    """The application: a Flask-Login login, a page only a logged-in user sees, a cart."""
    app = Flask(__name__)
    app.config.update({"SECRET_KEY": SECRET, **config})
    manager = LoginManager(app)
    manager.user_loader(lambda user_id: User(user_id) if user_id == "alice" else None)

    @app.post("/login")
    def login() -> str:
        if hasattr(session, "regenerate"):
            session.regenerate()
        login_user(User(request.form["user"]))  # no remember cookie: the session alone
        session["cart"] = [1, 2]
        session.permanent = request.form.get("permanent") == "1"
        return "ok"

    @app.get("/me")
    @login_required
    def me() -> str:
        return f"{current_user.id} {session['cart']}"

    @app.post("/logout")
    def logout() -> str:
        session.destroy()  # type: ignore[attr-defined]
        return "bye"

    return app


def new_app(store: Any, clock: FakeClock, **config: Any) -> Flask:
    app = make_app(**config)
    Session(app, store=store, clock=clock, migrate_from="flask")
    return app


def logged_in_on_flask(permanent: bool = False, **config: Any) -> str:
    """Log in on the old stack; the cookie the browser keeps."""
    client = make_app(**config).test_client()
    assert client.post("/login", data={"user": "alice", "permanent": "1" if permanent else "0"})
    found = client.get_cookie("session")
    assert found is not None
    return found.value


def switched(app: Flask, old_cookie: str, name: str = "session") -> FlaskClient:
    client = app.test_client()
    client.set_cookie(name, old_cookie)
    return client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())  # Flask signs with the real time


def test_a_flask_login_user_stays_logged_in_across_the_switch(clock: FakeClock) -> None:
    old_cookie = logged_in_on_flask(permanent=True)
    store = CountingStore()
    client = switched(new_app(store, clock), old_cookie)

    response = client.get("/me")

    assert response.status_code == 200 and response.text == "alice [1, 2]"
    (cookie,) = set_cookies(response)
    assert cookie.name == "session" and cookie.value != old_cookie
    assert "max-age" in cookie.attrs  # session.permanent carried over
    assert client.get("/me").text == "alice [1, 2]"  # now on our cookie
    # Flask-Login's keys, as Flask-Login wrote them; Flask's _permanent is our flag.
    (record_key,) = [key for key in store.inner._records if store.inner.load(key)[0][:2] == b"1 "]
    assert b'"_user_id":"alice"' in store.inner.load(record_key)[0]  # type: ignore[index]
    assert b"_permanent" not in store.inner.load(record_key)[0]  # type: ignore[index]


def test_within_the_grace_window_parallel_requests_get_the_same_session(
    clock: FakeClock,
) -> None:
    old_cookie = logged_in_on_flask()
    app = new_app(MemoryStore(), clock)
    first = switched(app, old_cookie).get("/me")
    clock.advance(20)
    second = switched(app, old_cookie).get("/me")
    assert first.text == second.text == "alice [1, 2]"
    assert set_cookies(first)[0].value == set_cookies(second)[0].value


def test_a_replay_after_the_grace_window_opens_nothing(clock: FakeClock) -> None:
    old_cookie = logged_in_on_flask()
    app = new_app(MemoryStore(), clock)
    assert switched(app, old_cookie).get("/me").status_code == 200
    clock.advance(31)
    assert switched(app, old_cookie).get("/me").status_code == 401


def test_a_replay_after_a_logout_on_the_new_side_opens_nothing(clock: FakeClock) -> None:
    old_cookie = logged_in_on_flask()
    app = new_app(MemoryStore(), clock)
    client = switched(app, old_cookie)
    assert client.get("/me").status_code == 200
    client.post("/logout")
    assert switched(app, old_cookie).get("/me").status_code == 401


BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.mark.parametrize("bad", ["forged", "expired", "other secret", "respelled", "padded"])
def test_a_cookie_not_as_flask_issued_it_is_no_cookie_and_costs_no_lookup(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    if bad == "expired":  # signed 40 days ago, past PERMANENT_SESSION_LIFETIME's 31
        signed_at = int(time.time()) - 40 * 86400
        with monkeypatch.context() as patch:
            patch.setattr(TimestampSigner, "get_timestamp", lambda self: signed_at)
            old_cookie = logged_in_on_flask()
    elif bad == "other secret":
        old_cookie = logged_in_on_flask(SECRET_KEY="another-secret-" + "y" * 32)
    elif bad == "respelled":  # the same signature bytes: the last character's unused bit set
        genuine = logged_in_on_flask()
        old_cookie = genuine[:-1] + BASE64[BASE64.index(genuine[-1]) ^ 1]
    elif bad == "padded":  # itsdangerous would decode it all the same
        old_cookie = logged_in_on_flask() + "=="
    else:
        genuine = logged_in_on_flask()
        old_cookie = genuine[:-3] + ("AAA" if not genuine.endswith("AAA") else "BBB")
    store = CountingStore()
    response = switched(new_app(store, clock), old_cookie).get("/me")
    assert response.status_code == 401
    assert store.total == 0
    assert set_cookies(response) == []  # and left alone: nothing was written


def test_secret_key_fallbacks_verify_old_cookies(clock: FakeClock) -> None:
    old_cookie = logged_in_on_flask()
    app = new_app(
        MemoryStore(), clock, SECRET_KEY="rotated-" + "z" * 40, SECRET_KEY_FALLBACKS=[SECRET]
    )
    assert switched(app, old_cookie).get("/me").text == "alice [1, 2]"


def test_the_old_cookie_is_expired_where_its_name_and_path_are_not_ours(
    clock: FakeClock,
) -> None:
    old_cookie = logged_in_on_flask()
    app = make_app(SESSION_COOKIE_NAME="sid")
    Session(app, store=MemoryStore(), clock=clock, migrate_from="flask?cookie_name=session")
    client = switched(app, old_cookie)

    response = client.get("/me")

    assert response.text == "alice [1, 2]"
    cookies = {cookie.name: cookie for cookie in set_cookies(response)}
    assert cookies["sid"].value and not cookies["sid"].expires_now
    assert cookies["session"].expires_now
    assert client.get_cookie("session") is None
    assert client.get("/me").text == "alice [1, 2]"


def test_the_setting_in_app_config_works_as_the_option(clock: FakeClock) -> None:
    old_cookie = logged_in_on_flask()
    app = make_app(SESSION_MIGRATE_FROM="flask")
    Session(app, store=MemoryStore(), clock=clock)
    assert switched(app, old_cookie).get("/me").text == "alice [1, 2]"
