"""The application the metrics tests send traffic of every kind to, in-process or under gunicorn.

Routes (each does one thing with the session)::

    /untouched          never looks at it
    /read               reads it
    /write              sets n
    /login?user=U       sets the owner and regenerates (a login)
    /logout             destroys it
    /slow-write?gate=G  reads it, waits at gate G, then sets a key of its own
    /slow-read?gate=G   reads it, waits at gate G
    /revoke?user=U      ends every session of U (does not use its own)
    /metrics            (gunicorn only) the Prometheus exposition, all workers added up

A gate is two files in the gates directory: ``G.loaded``, made once the
request has loaded its session, and ``G.go``, which the test makes to let it
go on. Files, not events, so that a test drives requests in other processes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from wsgi_session.backends.owners import Sessions

GATE_WAIT = 20.0  # seconds a request waits at its gate before failing

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def wait_at(gates: Path, name: str) -> None:
    (gates / f"{name}.loaded").touch()
    deadline = time.monotonic() + GATE_WAIT
    while not (gates / f"{name}.go").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gate {name} never opened")
        time.sleep(0.005)


def traffic_app(gates: Path, sessions: Callable[[], Sessions]) -> WSGIApp:
    """The routes above but /metrics; ``sessions``: the middleware's, for /revoke."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        query = {name: values[0] for name, values in parse_qs(environ["QUERY_STRING"]).items()}
        session = environ["wsgi_session"]
        body = "ok"
        if path == "/read":
            body = repr(session.get("n"))
        elif path == "/write":
            session["n"] = session.get("n", 0) + 1
        elif path == "/login":
            session["user"] = query["user"]
            session.regenerate()
        elif path == "/logout":
            session.destroy()
        elif path in ("/slow-write", "/slow-read"):
            session.get("n")
            wait_at(gates, query["gate"])
            if path == "/slow-write":
                session[query["gate"]] = True
        elif path == "/revoke":
            body = str(sessions().revoke(query["user"]))
        elif path != "/untouched":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such route"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]

    return app


def _gunicorn_application() -> WSGIApp:
    """Under gunicorn: the middleware configured by WSGI_SESSION_*, and /metrics beside it."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    from wsgi_session.config import from_env

    gates = Path(os.environ["METRICS_TEST_GATES"])
    middleware = from_env(traffic_app(gates, lambda: middleware.sessions))

    def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] != "/metrics":
            return middleware(environ, start_response)
        # Every worker's events are in the multiprocess directory once published.
        middleware.metrics.flush()  # type: ignore[attr-defined]
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
        return [generate_latest(registry)]

    return application


def __getattr__(name: str) -> Any:
    # Built on first use: the in-process tests import this module without gunicorn's settings.
    if name == "application":
        return _gunicorn_application()
    raise AttributeError(name)
