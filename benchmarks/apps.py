"""The applications under test: one request handler per scenario, any session library.

Every app answers ``PATH_INFO`` as follows, so all rows do the same work:

* ``/untouched``: never looks at the session (a logged-in user on a static page);
* ``/read``: reads ``user_id`` (most page views); answers 404 if it is missing,
  so a row whose cookie does not find its session fails loudly instead of timing
  a cheap miss;
* ``/write``: sets ``n`` to a new value (a cart, a counter, a flash message);
* ``/new``: a visitor without a cookie gets a session (the first page view);
* ``/seed``: stores the payload once, to get the cookie the other paths send;
* ``/login``: a visitor with a session logs in: its id is regenerated (the
  library's own call for it) and ``_user_id`` (Flask-Login's key) is set;
* ``/logout``: the session is ended (the library's own call for it).
"""

from __future__ import annotations

import io
import itertools
import json
import random
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

SCENARIOS = ("untouched", "read", "write", "new")
SECRET = "benchmark-secret-key-0123456789abcdef-0123456789"
USER_ID = 48213
OK = [("Content-Type", "text/plain"), ("Content-Length", "2")]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
SessionOf = Callable[[dict[str, Any]], MutableMapping[str, Any]]
Save = Callable[[Any], None]
Hook = Callable[[Any], None]
LOGIN_KEY = "_user_id"  # where Flask-Login keeps the user: the owner key our Flask adapter reads


def regenerate(session: Any) -> None:
    """wsgi_session's login step (plain and Flask): a new id, the data kept."""
    session.regenerate()


def destroy(session: Any) -> None:
    """wsgi_session's logout: the record deleted, the cookie expired."""
    session.destroy()


def payload(size: int) -> dict[str, Any]:
    """Session data whose JSON is about ``size`` bytes: a user id, a token, then padding.

    The padding is random hex, which compresses about as well as real session
    data does (a run of one letter would let a compressing store cheat).
    """
    data: dict[str, Any] = {
        "user_id": USER_ID,
        "csrf": "5f0c7a7d2b1e4c9a8f3d6b2a1c0e9f8d",
        "theme": "dark",
    }
    padding = size - len(json.dumps(data, separators=(",", ":"))) - len(',"notes":""')
    if padding > 0:
        data["notes"] = random.Random(size).randbytes(padding // 2 + 1).hex()[:padding]
    return data


def environ(path: str, cookie: str | None = None) -> dict[str, Any]:
    """A minimal GET request environ, as a server would build it."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie:
        env["HTTP_COOKIE"] = cookie
    return env


def session_app(
    session_of: SessionOf,
    data: dict[str, Any],
    save: Save | None = None,
    login: Hook = regenerate,
    logout: Hook = destroy,
) -> WSGIApp:
    """A plain WSGI app using the session ``session_of(environ)`` returns.

    ``save`` is called after a change, for libraries that need it (Beaker);
    ``login`` and ``logout`` are the library's calls for those steps.
    """
    counter = itertools.count()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        status = "200 OK"
        if path != "/untouched":
            session = session_of(environ)
            if path == "/read":
                if session.get("user_id") != USER_ID:
                    status = "404 Not Found"
            elif path == "/write":
                session["n"] = next(counter)
            elif path == "/new":
                session["user_id"] = USER_ID
            elif path == "/seed":
                session.update(data)
            elif path == "/login":
                login(session)
                session[LOGIN_KEY] = f"user-{next(counter) % 3}"
            elif path == "/logout":
                logout(session)
            if save is not None and path not in ("/read", "/logout"):
                save(session)
        start_response(status, list(OK))
        return [b"ok"]

    return app


def bare_app(data: dict[str, Any]) -> WSGIApp:
    """The baseline: the same handlers on a dict that is never loaded or saved."""
    session = dict(data)
    return session_app(lambda environ: session, data)


def flask_app(
    data: dict[str, Any],
    configure: Callable[[Any], object] | None = None,
    login: Hook = regenerate,
    logout: Hook = destroy,
) -> Any:
    """A Flask app with the same handlers on ``flask.session``.

    ``configure(app)`` installs the session library; without it the app is the
    baseline, whose session is a dict that is never loaded or saved. ``login``
    and ``logout`` are the library's calls for those steps.
    """
    from flask import Flask, session
    from flask.sessions import SecureCookieSession, SessionInterface

    app = Flask("benchmark")
    app.secret_key = SECRET
    counter = itertools.count()

    @app.get("/untouched")
    def untouched() -> str:
        return "ok"

    @app.get("/read")
    def read() -> tuple[str, int]:
        return "ok", 200 if session.get("user_id") == USER_ID else 404

    @app.get("/write")
    def write() -> str:
        session["n"] = next(counter)
        return "ok"

    @app.get("/new")
    def new() -> str:
        session["user_id"] = USER_ID
        return "ok"

    @app.get("/seed")
    def seed() -> str:
        session.update(data)
        return "ok"

    @app.get("/login")
    def log_in() -> str:
        login(session)
        session[LOGIN_KEY] = f"user-{next(counter) % 3}"
        return "ok"

    @app.get("/logout")
    def log_out() -> str:
        logout(session)
        return "ok"

    if configure is None:

        class Unsaved(SessionInterface):
            def open_session(self, app: Flask, request: object) -> SecureCookieSession:
                return SecureCookieSession(data)

            def save_session(self, app: Flask, session: object, response: object) -> None:
                pass

        app.session_interface = Unsaved()
    else:
        configure(app)
    return app
