"""The application gunicorn serves in the process-level concurrency tests.

The middleware is configured by the ``WSGI_SESSION_*`` variables; the test
talks to the requests through files in the directory ``CONCURRENCY_SIGNALS``:

- ``/write?key=K&gate=G`` loads the session, creates ``loaded-K``, waits until
  the test creates ``G`` (without ``gate``, it goes straight on), then sets
  ``session[K]`` to this worker's pid.
- ``/logout`` destroys the session; ``/read`` sends its data back.
- ``/write?...&regenerate=1`` gives the session a new id before it sets ``K``.
- ``/login?user=U`` sets the owner key (``WSGI_SESSION_OWNER_KEY``) with a new id;
  ``/revoke-others`` ends every other session of the request's owner and
  answers how many in ``revoked``; ``/sessions`` answers the owner's sessions.

Every answer is JSON: ``pid``, the session ``data`` the request saw last, and
``stats``, this worker's conflict counters read after the commit (counters are
per process and only ever go up).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from wsgi_session import ServerSideBackend, Session
from wsgi_session.config import from_env

SIGNALS = Path(os.environ["CONCURRENCY_SIGNALS"])
OWNER_KEY = os.environ.get("WSGI_SESSION_OWNER_KEY", "user")
extra: dict[str, Any] = {}  # what a route adds to its answer (sync workers: one at a time)
GATE_TIMEOUT = 20.0  # seconds; a request whose gate never opens answers 504


def write(session: Session, query: dict[str, str]) -> str:
    key, gate = query["key"], query.get("gate")
    if not (key + (gate or "")).isalnum():  # both name files
        return "400 Bad Request"
    session.get(key)  # load now, as a slow request would, before it waits
    (SIGNALS / f"loaded-{key}").touch()
    if gate is not None and not wait_for(SIGNALS / gate):
        return "504 Gateway Timeout"
    if query.get("regenerate") == "1":
        session.regenerate()
    session[key] = os.getpid()
    return "200 OK"


def login(session: Session, query: dict[str, str]) -> str:
    session.regenerate()
    session[OWNER_KEY] = query["user"]
    return "200 OK"


def revoke_others(session: Session, query: dict[str, str]) -> str:
    extra["revoked"] = application.sessions.revoke(session[OWNER_KEY], keep=session)
    return "200 OK"


def list_sessions(session: Session, query: dict[str, str]) -> str:
    extra["sessions"] = [
        {"current": info.current, "agent": info.user_agent, "address": info.address}
        for info in application.sessions.of(session[OWNER_KEY], current=session)
    ]
    return "200 OK"


def wait_for(path: Path) -> bool:
    deadline = time.monotonic() + GATE_TIMEOUT
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def logout(session: Session, query: dict[str, str]) -> str:
    session.destroy()
    return "200 OK"


def read(session: Session, query: dict[str, str]) -> str:
    return "200 OK"


ROUTES: dict[str, Callable[[Session, dict[str, str]], str]] = {
    "/write": write,
    "/logout": logout,
    "/read": read,
    "/login": login,
    "/revoke-others": revoke_others,
    "/sessions": list_sessions,
}


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    session: Session = environ["wsgi_session"]
    query = {name: values[-1] for name, values in parse_qs(environ["QUERY_STRING"]).items()}
    extra.clear()
    status = ROUTES[environ["PATH_INFO"]](session, query)
    data = dict(session)
    start_response(status, [("Content-Type", "application/json")])  # commits the session
    answer = {"pid": os.getpid(), "data": data, "stats": stats.as_dict(), **extra}
    return [json.dumps(answer).encode()]


application = from_env(app)
if not isinstance(application.backend, ServerSideBackend):
    raise RuntimeError("the concurrency tests need a server-side store")
stats = application.backend.stats
