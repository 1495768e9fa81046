"""The application ``wsgi-session demo`` serves: a visit counter, log in, log out.

Each page shows what the middleware did: the session id (and the store key
derived from it), when the session expires, and what the cookie is. A logged-in
user's "your sessions" page lists where the name is logged in and signs the
other sessions out.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime, timezone

from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from wsgi_session.backends import ServerSideBackend
from wsgi_session.config import Config, format_duration
from wsgi_session.errors import SessionsUnsupported
from wsgi_session.session import Session
from wsgi_session.wsgi import StartResponse, WSGIEnvironment

MAX_NAME = 40

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wsgi_session demo</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44em;margin:2em auto;padding:0 1em}}
code{{background:#eee;padding:0 .2em}} .note{{background:#ffd;padding:.5em}}
th{{text-align:left;padding-right:1em;vertical-align:top}}</style></head>
<body><h1>wsgi_session demo</h1>
{note}
<p>You have loaded this page <strong>{visits}</strong> time{plural} in this session.</p>
{account}
<h2>The session</h2>
<table>{rows}</table>
<p>Reload to count; open a private window for a second session.</p>
</body></html>
"""
_LOGIN = """<form method="post" action="login">
<label>Name <input name="name" maxlength="{max_name}" required></label>
<label><input type="checkbox" name="remember"> keep me logged in</label>
<button>Log in</button> <small>(logging in gives the session a new id)</small></form>"""
_LOGOUT = """<form method="post" action="logout"><p>Logged in as <strong>{user}</strong>.
<button>Log out</button> <small>(deletes the record and expires the cookie)</small>
<a href="sessions">Your sessions</a></p></form>"""
_SESSIONS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your sessions</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:44em;margin:2em auto;padding:0 1em}}
td,th{{text-align:left;padding-right:1em}}</style></head>
<body><h1>Where {user} is logged in</h1>
<table><tr><th>Browser</th><th>Network</th><th>Last used</th><th></th></tr>{rows}</table>
<form method="post" action="sessions/revoke-others"><button>Sign out the others</button></form>
<p><a href="./">Back</a></p>
</body></html>
"""
OWNER_KEY = "user"  # the key the demo's login sets


class Demo:
    """The demo application, already wrapped in the middleware ``config`` describes."""

    def __init__(self, config: Config) -> None:
        self.middleware = config.middleware(
            self.application, owner_key=OWNER_KEY, record_client=True
        )
        self.lifetime = self.middleware.lifetime

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.middleware(environ, start_response)

    def application(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        request = Request(environ)
        session: Session = environ[self.middleware.environ_key]
        if request.path == "/":
            response = self.home(request, session)
        elif request.path == "/login" and request.method == "POST":
            response = self.login(request, session)
        elif request.path == "/logout" and request.method == "POST":
            session.destroy()
            response = redirect("./?logged_out", 303)
        elif request.path == "/sessions" and OWNER_KEY in session:
            response = self.sessions(session)
        elif request.path == "/sessions/revoke-others" and request.method == "POST":
            if OWNER_KEY in session:
                self.middleware.sessions.revoke(session[OWNER_KEY], keep=session)
            response = redirect("../sessions", 303)
        else:
            # Not the session's business: it is never touched, so no cookie is sent.
            response = Response("Not Found\n", status=404)
        return response(environ, start_response)

    def login(self, request: Request, session: Session) -> Response:
        name = request.form.get("name", "").strip()[:MAX_NAME]
        if not name:
            return redirect("./", 303)
        old_id = session.id
        session.regenerate()  # an id planted before login is worthless afterwards
        session[OWNER_KEY] = name
        session.permanent = "remember" in request.form
        session["note"] = (
            f"Logged in. The session id changed from {_short(old_id)} to {_short(session.id)}; "
            "the old one no longer works."
        )
        return redirect("./", 303)

    def sessions(self, session: Session) -> Response:
        """The user's sessions: browser, network, last use; this one marked."""
        user = session[OWNER_KEY]
        try:
            found = self.middleware.sessions.of(user, current=session)
        except SessionsUnsupported as exc:
            return Response(f"{exc}\n", status=501, content_type="text/plain; charset=utf-8")
        rows = "".join(
            f"<tr><td>{html.escape(info.user_agent or 'unknown')}</td>"
            f"<td>{html.escape(info.address or 'unknown')}</td>"
            f"<td>{_time(info.last_seen.timestamp())}</td>"
            f"<td>{'this one' if info.current else ''}</td></tr>"
            for info in found
        )
        body = _SESSIONS.format(user=html.escape(user), rows=rows)
        return Response(body, content_type="text/html; charset=utf-8")

    def home(self, request: Request, session: Session) -> Response:
        session["visits"] = session.get("visits", 0) + 1
        note = session.pop("note", None)
        if "logged_out" in request.args and session.new:
            note = "Logged out. The old record was deleted; this is a brand new session."
        user = session.get(OWNER_KEY)
        account = (
            _LOGOUT.format(user=html.escape(user)) if user else _LOGIN.format(max_name=MAX_NAME)
        )
        body = _PAGE.format(
            note=f'<p class="note">{html.escape(note)}</p>' if note else "",
            visits=session["visits"],
            plural="" if session["visits"] == 1 else "s",
            account=account,
            rows="".join(
                f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
                for label, value in self.facts(session)
            ),
        )
        return Response(body, content_type="text/html; charset=utf-8")

    def facts(self, session: Session) -> list[tuple[str, str]]:
        """What the page says about the session, as (label, text) rows."""
        origin = session.origin
        now = self.lifetime.clock()
        idle = session.idle_timeout or self.lifetime.idle_timeout
        facts = [
            ("id", f"{_short(session.id)} (256 random bits; the cookie carries it signed)"),
        ]
        backend = self.middleware.backend
        if isinstance(backend, ServerSideBackend):
            key = backend.store_key(session.id)
            facts.append(("store key", f"{key[:12]}… (SHA-256 of the id; the id is not stored)"))
            facts.append(("store", repr(backend.store)))
        facts += [
            ("record", "created by this request" if session.new else "loaded from the store"),
            ("started", _time(origin.created)),
            (
                "expires",
                f"{_time(now + self.lifetime.left(session, now))} "
                f"unless used again (idle timeout {format_duration(idle)})",
            ),
            (
                "cookie",
                f"kept for {format_duration(idle)}"
                if session.permanent
                else "deleted when the browser closes",
            ),
        ]
        return facts


def _short(session_id: str) -> str:
    return session_id[:8] + "…"


def _time(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(sep=" ", timespec="seconds")
