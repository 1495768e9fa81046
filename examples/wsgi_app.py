"""A bare WSGI application with sessions: a visit counter.

The application itself only reads ``environ["wsgi_session"]``; the session
middleware is added around it, configured by ``WSGI_SESSION_*`` variables::

    export WSGI_SESSION_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_hex(32))')"
    python examples/wsgi_app.py                  # http://127.0.0.1:8000
    gunicorn --chdir examples 'wsgi_session:wrap("wsgi_app:app")'
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import make_server

from wsgi_session.config import from_env


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Count this browser's visits; ``/logout`` forgets them."""
    session = environ["wsgi_session"]
    if environ.get("PATH_INFO") == "/logout":
        session.destroy()
        body = "Forgotten.\n"
    else:
        session["visits"] = session.get("visits", 0) + 1
        times = "time" if session["visits"] == 1 else "times"
        body = (
            f"You have been here {session['visits']} {times} (served by process {os.getpid()}).\n"
        )
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]


def app_factory(global_conf: dict[str, str], **local_conf: str) -> Callable[..., Iterable[bytes]]:
    """PasteDeploy's ``paste.app_factory`` (see paste.ini)."""
    return app


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    with make_server("127.0.0.1", port, from_env(app)) as server:
        print(f"serving on http://127.0.0.1:{port}", flush=True)
        server.serve_forever()
