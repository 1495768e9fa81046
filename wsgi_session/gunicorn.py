"""gunicorn: wrap each worker's application once it is loaded, after the fork.

In ``gunicorn.conf.py``::

    from wsgi_session.gunicorn import post_worker_init

The settings come from the ``WSGI_SESSION_*`` environment variables. Already
using the hook? Call this one from yours.
"""

from __future__ import annotations

from typing import Protocol

from wsgi_session.config import from_env
from wsgi_session.wsgi import WSGIApplication


class Worker(Protocol):
    """The part of a gunicorn worker this hook uses: its loaded application."""

    wsgi: WSGIApplication


def post_worker_init(worker: Worker) -> None:
    """Replace the worker's application by a SessionMiddleware around it."""
    worker.wsgi = from_env(worker.wsgi)
