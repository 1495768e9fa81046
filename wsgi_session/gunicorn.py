"""gunicorn: wrap each worker's application once it is loaded, after the fork.

In ``gunicorn.conf.py``::

    from wsgi_session.gunicorn import post_worker_init

The settings come from the ``WSGI_SESSION_*`` environment variables. Already
using the hook? Call this one from yours. With ``WSGI_SESSION_METRICS=prometheus``
and several workers, also ``from wsgi_session.gunicorn import child_exit``
(docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from wsgi_session.config import from_env
from wsgi_session.wsgi import WSGIApplication


class Worker(Protocol):
    """The part of a gunicorn worker this hook uses: its loaded application."""

    wsgi: WSGIApplication


def post_worker_init(worker: Worker) -> None:
    """Replace the worker's application by a SessionMiddleware around it."""
    worker.wsgi = from_env(worker.wsgi)


class ExitedWorker(Protocol):
    """The part of a gunicorn worker :func:`child_exit` uses: its process id."""

    pid: int


def child_exit(server: object, worker: ExitedWorker) -> None:
    """Prometheus multiprocess mode: tell prometheus_client that ``worker`` has exited.

    Its counters stay in the directory (they still add up); its live gauges go.
    """
    from prometheus_client import multiprocess  # the [prometheus] extra

    mark_process_dead: Callable[[int], None] = multiprocess.mark_process_dead  # unannotated
    mark_process_dead(worker.pid)
