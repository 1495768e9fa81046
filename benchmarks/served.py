"""What gunicorn serves in the HTTP benchmark: ``benchmarks.served:app``.

``/bare/<scenario>`` is the bare app, ``/memcached/<scenario>`` the same app
with wsgi_session on memcached (whose address comes from the environment), so
one server answers both and they share everything but the sessions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from benchmarks.apps import WSGIApp, bare_app, payload
from benchmarks.subjects import ours_wsgi

ADDRESS_VARIABLE = "WSGI_SESSION_BENCH_MEMCACHED"
DATA = payload(100)


def memcached_app(address: str) -> WSGIApp:
    from wsgi_session.stores.memcached import MemcachedStore

    return ours_wsgi(MemcachedStore(address), DATA)


def router(apps: dict[str, WSGIApp]) -> WSGIApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        prefix, _, rest = environ["PATH_INFO"][1:].partition("/")
        environ["PATH_INFO"] = "/" + rest
        return apps[prefix](environ, start_response)

    return app


def __getattr__(name: str) -> WSGIApp:
    # Built on first use, in the gunicorn worker, not when the module is imported.
    if name == "app":
        return router(
            {"bare": bare_app(DATA), "memcached": memcached_app(os.environ[ADDRESS_VARIABLE])}
        )
    raise AttributeError(name)
