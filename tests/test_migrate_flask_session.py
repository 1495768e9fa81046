"""Adopting Flask-Session 0.8's sessions (``migrate_from="flask-session+redis://..."``).

The old application is a real Flask app with Flask-Session on a real
redis-server or memcached and a Flask-Login login; the new one the same app
with wsgi_session. A record Flask-Session wrote before 0.7 (a pickle) is
planted to show it is never unpickled.
"""

from __future__ import annotations

import logging
import pickle
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask, request, session
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user
from flask_session import Session as FlaskSessionExtension
from helpers import FakeClock, set_cookies
from pymemcache.client.base import Client as MemcacheClient
from redis_server import RedisServer

from wsgi_session import MemoryStore
from wsgi_session.flask import Session

SECRET = "flask-session-secret-0123456789abcdef012345"
UNPICKLED: list[str] = []


def _record_unpickling(what: str) -> str:
    UNPICKLED.append(what)
    return what


class Planted:
    """Unpickling this calls _record_unpickling: the test sees whether anyone did."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _record_unpickling, ("unpickled!",)


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"SECRET_KEY": SECRET, **config})
    manager = LoginManager(app)
    manager.user_loader(lambda user_id: User(user_id) if user_id == "alice" else None)

    @app.post("/login")
    def login() -> str:
        login_user(User(request.form["user"]))
        session["cart"] = [1, 2]
        return "ok"

    @app.get("/me")
    @login_required
    def me() -> str:
        return f"{current_user.id} {session['cart']}"

    return app


def old_app(kind: str, server: Any, **config: Any) -> Flask:
    if kind == "redis":
        settings = {"SESSION_TYPE": "redis", "SESSION_REDIS": redis.Redis.from_url(server.url)}
    else:
        host, _, port = server.address.rpartition(":")
        settings = {
            "SESSION_TYPE": "memcached",
            "SESSION_MEMCACHED": MemcacheClient((host, int(port))),
        }
    app = make_app(**settings, **config)
    FlaskSessionExtension(app)
    return app


def url_of(kind: str, server: Any, query: str = "") -> str:
    base = (
        f"flask-session+{server.url}"
        if kind == "redis"
        else f"flask-session+memcached://{server.address}"
    )
    return base + query


def logged_in(app: Flask) -> str:
    client = app.test_client()
    client.post("/login", data={"user": "alice"})
    assert client.get("/me").text == "alice [1, 2]"
    found = client.get_cookie("session")
    assert found is not None
    return found.value


@pytest.fixture(params=["redis", "memcached"])
def server(request: pytest.FixtureRequest) -> tuple[str, Any]:
    kind = request.param
    fixture = "redis_server" if kind == "redis" else "memcached_server"
    return kind, request.getfixturevalue(fixture)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


def test_a_flask_login_user_on_flask_session_stays_logged_in(
    server: tuple[str, Any], clock: FakeClock
) -> None:
    kind, running = server
    old_cookie = logged_in(old_app(kind, running))
    new = make_app()
    Session(new, store=MemoryStore(), clock=clock, migrate_from=url_of(kind, running))
    client = new.test_client()
    client.set_cookie("session", old_cookie)

    response = client.get("/me")

    assert response.text == "alice [1, 2]"
    (cookie,) = set_cookies(response)
    assert cookie.value != old_cookie and "max-age" in cookie.attrs  # SESSION_PERMANENT's
    assert client.get("/me").text == "alice [1, 2]"
    # The old record is gone: Flask-Session itself no longer knows the cookie.
    again = old_app(kind, running).test_client()
    again.set_cookie("session", old_cookie)
    assert again.get("/me").status_code == 401


def test_signed_flask_session_ids_verify_with_its_signer(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    with pytest.warns(DeprecationWarning):
        app = old_app("redis", redis_server, SESSION_USE_SIGNER=True)
    old_cookie = logged_in(app)
    new = make_app()
    source = url_of("redis", redis_server, "?use_signer=1")
    Session(new, store=MemoryStore(), clock=clock, migrate_from=source)
    client = new.test_client()
    client.set_cookie("session", old_cookie)
    assert client.get("/me").text == "alice [1, 2]"
    forged = new.test_client()
    forged.set_cookie("session", old_cookie[:-2] + "xx")
    assert forged.get("/me").status_code == 401
    base64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = new.test_client()  # the same signature bytes, spelled as no signer spells them
    respelled.set_cookie("session", old_cookie[:-1] + base64[base64.index(old_cookie[-1]) ^ 1])
    assert respelled.get("/me").status_code == 401


def test_a_pickled_record_is_never_unpickled_and_starts_a_fresh_session(
    redis_server: RedisServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    sid = "p" * 43  # Flask-Session's id format: token_urlsafe(32)
    client = redis.Redis.from_url(redis_server.url)
    client.set(f"session:{sid}", pickle.dumps({"_user_id": "alice", "x": Planted()}), ex=600)
    new = make_app()
    Session(new, store=MemoryStore(), clock=clock, migrate_from=url_of("redis", redis_server))
    browser = new.test_client()
    browser.set_cookie("session", sid)

    with caplog.at_level(logging.WARNING, "wsgi_session"):
        response = browser.get("/me")

    assert response.status_code == 401  # a fresh session: not logged in
    assert UNPICKLED == []
    assert "never unpickled" in caplog.text
    assert client.get(f"session:{sid}") is not None  # left where it was


def test_an_id_not_of_flask_sessions_format_costs_no_lookup(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    new = make_app()
    Session(new, store=MemoryStore(), clock=clock, migrate_from=url_of("redis", redis_server))
    monitor = redis.Redis.from_url(redis_server.url)
    before = monitor.info("stats")["total_commands_processed"]
    browser = new.test_client()
    for value in ["short", "x" * 44, "a" * 42 + "!", "é" * 43]:
        browser.set_cookie("session", value)
        assert browser.get("/me").status_code == 401
    after = monitor.info("stats")["total_commands_processed"]
    assert after - before == 1  # the INFO itself


def test_an_outage_of_the_old_redis_answers_503_then_the_session_is_adopted(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    old_cookie = logged_in(old_app("redis", redis_server))
    new = make_app()
    Session(new, store=MemoryStore(), clock=clock, migrate_from=url_of("redis", redis_server))
    browser = new.test_client()
    browser.set_cookie("session", old_cookie)
    redis_server.pause()  # the old system's server stops answering (SIGSTOP)
    try:
        response = browser.get("/me")
    finally:
        redis_server.resume()
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert set_cookies(response) == []  # nothing written, the old cookie left alone
    assert browser.get("/me").text == "alice [1, 2]"


def test_flask_session_on_sqlalchemy_and_sqlite(tmp_path: Path, clock: FakeClock) -> None:
    from flask_sqlalchemy import SQLAlchemy

    database = f"sqlite:///{tmp_path / 'flask-session.db'}"
    old = make_app(SESSION_TYPE="sqlalchemy", SQLALCHEMY_DATABASE_URI=database)
    old.config["SESSION_SQLALCHEMY"] = SQLAlchemy(old)
    FlaskSessionExtension(old)
    old_cookie = logged_in(old)
    new = make_app()
    source = f"flask-session+sqlalchemy+{database}"
    Session(new, store=MemoryStore(), clock=clock, migrate_from=source)
    client = new.test_client()
    client.set_cookie("session", old_cookie)

    response = client.get("/me")

    assert response.text == "alice [1, 2]"
    assert "max-age" in set_cookies(response)[0].attrs
    again = old.test_client()  # the old row is gone: Flask-Session no longer knows the cookie
    again.set_cookie("session", old_cookie)
    assert again.get("/me").status_code == 401


def test_session_migrate_keep_old_leaves_the_old_record_for_a_rollback(
    redis_server: RedisServer, clock: FakeClock
) -> None:
    old = old_app("redis", redis_server)
    old_cookie = logged_in(old)
    new = make_app(SESSION_MIGRATE_KEEP_OLD=True)
    Session(new, store=MemoryStore(), clock=clock, migrate_from=url_of("redis", redis_server))
    client = new.test_client()
    client.set_cookie("session", old_cookie)
    assert client.get("/me").text == "alice [1, 2]"
    rollback = old.test_client()  # the old stack, back: its user is still logged in
    rollback.set_cookie("session", old_cookie)
    assert rollback.get("/me").text == "alice [1, 2]"
