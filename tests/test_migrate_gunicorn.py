"""The switch as it happens: gunicorn stops on the old stack and starts with the migration setting.

Two workers, real servers: the example application on our SQLite store moving
to Redis, and a Flask-Login application moving from Flask's own cookie
sessions. The same browser (a cookie jar) is still logged in after the
restart, and a page's parallel requests with one old cookie end in one session.
"""

from __future__ import annotations

import secrets
import sqlite3
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from redis_server import RedisServer
from wsgi_server import EXAMPLES, ServerProcess, client, free_port, gunicorn_command, server_env

SECRET = secrets.token_hex(32)
PARALLEL = 12


def gunicorn(tmp_path: Path, app: str, chdir: Path, **settings: str) -> ServerProcess:
    port = free_port()
    args = ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "gthread"]
    args += ["--threads", "4", "--chdir", str(chdir), app]
    server = ServerProcess(
        gunicorn_command(*args), env=server_env(tmp_path, **settings), cwd=tmp_path, port=port
    )
    return server.start()


def visits(browser: requests.Session, url: str) -> int:
    response = browser.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return int(response.text.split("been here ")[1].split(" ")[0])


def parallel_gets(url: str, cookie_name: str, old_cookie: str) -> list[requests.Response]:
    """A page's parallel requests: each its own connection, all with the same old cookie."""

    def get(_: int) -> requests.Response:
        return requests.get(url, cookies={cookie_name: old_cookie}, timeout=10)

    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(get, range(PARALLEL)))


def test_sqlite_to_redis_across_a_gunicorn_restart(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    database = tmp_path / "old.db"
    factory = 'wsgi_session:wrap("wsgi_app:app")'
    settings = {"WSGI_SESSION_SECRET_KEY": SECRET}
    old = gunicorn(
        tmp_path, factory, EXAMPLES, **settings, WSGI_SESSION_STORE=f"sqlite://{database}"
    )
    browser, racer = client(), client()
    assert [visits(browser, old.url) for _ in range(3)] == [1, 2, 3]
    visits(racer, old.url)
    old_cookie, racing_cookie = browser.cookies["session"], racer.cookies["session"]
    old.stop()

    new = gunicorn(
        tmp_path,
        factory,
        EXAMPLES,
        **settings,
        WSGI_SESSION_STORE=redis_server.url,
        WSGI_SESSION_MIGRATE_FROM=f"sqlite://{database}",
    )
    try:
        assert visits(browser, new.url) == 4  # still this browser's session
        assert browser.cookies["session"] != old_cookie  # our new cookie
        with sqlite3.connect(database) as db:
            (left,) = db.execute("SELECT COUNT(*) FROM wsgi_sessions").fetchone()
        assert left == 1  # the racer's, not yet adopted: the browser's old record is gone

        answers = parallel_gets(new.url, "session", racing_cookie)

        assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
        sent = {answer.cookies.get("session") for answer in answers}
        assert len(sent) == 1 and None not in sent, sent  # one session, and every one got it
        assert all("been here" in answer.text for answer in answers)
    finally:
        new.stop()


FLASK_APP = """
import os
from flask import Flask, request, session
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ["APP_SECRET"]
manager = LoginManager(app)


class User(UserMixin):
    def __init__(self, user_id):
        self.id = user_id


manager.user_loader(lambda user_id: User(user_id) if user_id == "alice" else None)


@app.post("/login")
def login():
    login_user(User(request.form["user"]))
    session["cart"] = [1, 2]
    return "ok"


@app.get("/")
@login_required
def me():
    return f"{current_user.id} has been here {session['cart']} (pid {os.getpid()})"


if os.environ.get("MIGRATE"):
    from wsgi_session import RedisStore
    from wsgi_session.flask import Session

    Session(app, store=RedisStore(os.environ["STORE"]), migrate_from=os.environ["MIGRATE"])
elif os.environ.get("FLASK_SESSION_REDIS"):  # the old stack on Flask-Session instead
    import redis
    from flask_session import Session as FlaskSession

    app.config["SESSION_TYPE"] = "redis"
    app.config["SESSION_REDIS"] = redis.Redis.from_url(os.environ["FLASK_SESSION_REDIS"])
    FlaskSession(app)
"""


def test_flask_cookie_sessions_to_wsgi_session_across_a_gunicorn_restart(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "login_app.py").write_text(textwrap.dedent(FLASK_APP))
    old = gunicorn(tmp_path, "login_app:app", code, APP_SECRET=SECRET)
    browser, racer = client(), client()
    for who in (browser, racer):
        assert who.post(old.url + "login", data={"user": "alice"}, timeout=10).text == "ok"
    assert browser.get(old.url, timeout=10).text.startswith("alice")
    old_cookie, racing_cookie = browser.cookies["session"], racer.cookies["session"]
    old.stop()

    new = gunicorn(
        tmp_path, "login_app:app", code, APP_SECRET=SECRET, MIGRATE="flask", STORE=redis_server.url
    )
    try:
        response = browser.get(new.url, timeout=10)
        assert response.status_code == 200 and response.text.startswith(
            "alice has been here [1, 2]"
        )
        assert browser.cookies["session"] != old_cookie
        assert browser.get(new.url, timeout=10).text.startswith("alice")

        answers = parallel_gets(new.url, "session", racing_cookie)

        assert [answer.status_code for answer in answers] == [200] * PARALLEL
        assert len({answer.cookies.get("session") for answer in answers}) == 1
    finally:
        new.stop()


OLD_DJANGO = """
from django_demo.settings_engine import *  # noqa: F403

SESSION_ENGINE = "django.contrib.sessions.backends.db"  # the old stack: Django's own sessions
"""
NEW_DJANGO = """
from django_demo.settings_engine import *  # noqa: F403

WSGI_SESSION_MIGRATE_FROM = "django.contrib.sessions.backends.db"
"""


def test_django_db_sessions_to_the_engine_across_a_gunicorn_restart(tmp_path: Path) -> None:
    from test_served_django import PROJECT, USER, log_in, manage

    code = tmp_path / "code"
    code.mkdir()
    (code / "old_settings.py").write_text(OLD_DJANGO)
    (code / "new_settings.py").write_text(NEW_DJANGO)
    extra = {"PYTHONPATH": str(code)}

    def django(settings: str) -> ServerProcess:
        env = {
            "DJANGO_SETTINGS_MODULE": settings,
            "DJANGO_DEMO_DB": str(tmp_path / "users.db"),
            "DJANGO_DEMO_SESSIONS": f"sqlite://{tmp_path / 'sessions.db'}",
            **extra,
        }
        return gunicorn(tmp_path, "django.core.wsgi:get_wsgi_application()", PROJECT, **env)

    with_code = dict(extra)
    manage(tmp_path, "old_settings", "migrate", "--verbosity", "0", env=with_code)
    create = "from django.contrib.auth.models import User; User.objects.create_user("
    manage(
        tmp_path,
        "old_settings",
        "shell",
        "-c",
        f"{create}{USER!r}, password='served-password-0123')",
        env=with_code,
    )
    old = django("old_settings")
    browser = client()
    try:
        home = log_in(browser, old.url)
        assert f"Hello, {USER}" in home.text and 'id="visits">1<' in home.text
        old_cookie = browser.cookies["sessionid"]
    finally:
        old.stop()

    new = django("new_settings")
    try:
        home = browser.get(new.url, timeout=10)
        assert f"Hello, {USER}" in home.text, home.text  # still logged in
        assert 'id="visits">2<' in home.text  # with its data
        assert browser.cookies["sessionid"] != old_cookie  # a signed id of ours now
        with sqlite3.connect(tmp_path / "users.db") as db:
            (left,) = db.execute("SELECT COUNT(*) FROM django_session").fetchone()
        assert left == 0  # the old row is gone
    finally:
        new.stop()


def test_flask_session_on_redis_to_wsgi_session_across_a_gunicorn_restart(
    tmp_path: Path, redis_factory: Any
) -> None:
    old_redis, new_redis = redis_factory(), redis_factory()
    code = tmp_path / "code"
    code.mkdir()
    (code / "login_app.py").write_text(textwrap.dedent(FLASK_APP))
    old = gunicorn(
        tmp_path, "login_app:app", code, APP_SECRET=SECRET, FLASK_SESSION_REDIS=old_redis.url
    )
    browser = client()
    try:
        assert browser.post(old.url + "login", data={"user": "alice"}, timeout=10).text == "ok"
        assert browser.get(old.url, timeout=10).text.startswith("alice")
        old_cookie = browser.cookies["session"]
    finally:
        old.stop()
    assert len(old_redis.client().keys("session:*")) == 1

    new = gunicorn(
        tmp_path,
        "login_app:app",
        code,
        APP_SECRET=SECRET,
        MIGRATE=f"flask-session+{old_redis.url}",
        STORE=new_redis.url,
    )
    try:
        response = browser.get(new.url, timeout=10)
        assert response.text.startswith("alice has been here [1, 2]"), response.text
        assert browser.cookies["session"] != old_cookie
        assert old_redis.client().keys("session:*") == []  # the old record is gone
    finally:
        new.stop()
