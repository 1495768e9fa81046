"""Flask with its ``session`` kept server-side by wsgi_session.

    export FLASK_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_hex(32))')"
    flask --app examples/flask_app.py run            # http://127.0.0.1:5000

``FLASK_SESSION_STORE`` picks the store (default: the SQLite file), for
example ``memcached://127.0.0.1:11211``.
"""

from __future__ import annotations

import os

from flask import Flask, redirect, request, session, url_for
from werkzeug.wrappers import Response

from wsgi_session.config import store_from_url
from wsgi_session.flask import Session

app = Flask(__name__)
app.config.from_prefixed_env()  # FLASK_SECRET_KEY -> SECRET_KEY, and so on
# The session's owner is the "user" key (with Flask-Login, leave the default: _user_id).
Session(app, store=store_from_url(app.config.get("SESSION_STORE", "sqlite://")), owner_key="user")


@app.get("/")
def index() -> dict[str, object]:
    session["visits"] = session.get("visits", 0) + 1
    return {"visits": session["visits"], "user": session.get("user"), "pid": os.getpid()}


@app.post("/login")
def login() -> Response:
    session.regenerate()  # a new id on login
    session["user"] = request.form["name"]
    return redirect(url_for("index"))


@app.post("/logout")
def logout() -> Response:
    session.destroy()  # record deleted, cookie expired
    return redirect(url_for("index"))


@app.get("/sessions")
def user_sessions() -> dict[str, object]:
    """Where the user is logged in."""
    found = app.extensions["wsgi_session"].sessions.of(session["user"], current=session)
    return {
        "sessions": [
            {"last_seen": info.last_seen.isoformat(), "current": info.current} for info in found
        ]
    }


@app.post("/password")
def change_password() -> Response:
    """After a password change (stored by the application), sign out every other session."""
    # ... verify the current password and store the new one's hash here ...
    app.extensions["wsgi_session"].sessions.revoke(session["user"], keep=session)
    session.regenerate()
    return redirect(url_for("index"))
