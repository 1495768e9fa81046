"""What gunicorn serves in the HTTP benchmark: ``benchmarks.served:app``.

Every row of :data:`HTTP_ROWS` is mounted at ``/<slug>/``: the bare apps, and
wsgi_session, Flask-Session and Beaker on memcached and Redis (whose addresses
come from the environment), so one server answers them all and they share
everything but the sessions.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.apps import WSGIApp, payload
from benchmarks.subjects import ROWS, Context, Row

MEMCACHED_VARIABLE = "WSGI_SESSION_BENCH_MEMCACHED"
REDIS_VARIABLE = "WSGI_SESSION_BENCH_REDIS"
DATA = payload(100)

# Each session row next to the bare app of its framework, and the peers on the same app.
HTTP_ROWS = (
    "bare WSGI app",
    "wsgi_session memcached",
    "Beaker memcached",
    "wsgi_session redis",
    "Beaker redis",
    "bare Flask app",
    "wsgi_session memcached (Flask)",
    "Flask-Session memcached",
    "wsgi_session redis (Flask)",
    "Flask-Session redis",
)


def slug(name: str) -> str:
    """The URL prefix a row is served under."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def http_rows() -> list[Row]:
    by_name = {row.name: row for row in ROWS}
    return [by_name[name] for name in HTTP_ROWS]


def context(memcached: str, redis: str) -> Context:
    return Context(DATA, memcached, Path(tempfile.gettempdir()), redis=redis)


def router(apps: dict[str, WSGIApp]) -> WSGIApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        prefix, _, rest = environ["PATH_INFO"][1:].partition("/")
        environ["PATH_INFO"] = "/" + rest
        return apps[prefix](environ, start_response)

    return app


def __getattr__(name: str) -> WSGIApp:
    # Built on first use, in the gunicorn worker, not when the module is imported.
    if name == "app":
        ctx = context(os.environ[MEMCACHED_VARIABLE], os.environ[REDIS_VARIABLE])
        return router({slug(row.name): row.build(ctx) for row in http_rows()})
    raise AttributeError(name)
