"""Backends carry out the commit decision: where the session is kept, what the cookie holds.

``base``: the :class:`Backend` protocol and the commit flow; ``server``: records
in a :class:`~wsgi_session.stores.base.Store`, a signed id in the cookie;
``cas``: its compare-and-set writes and merges; ``cookie``: the whole session
in the cookie; ``factory``: which backend a ``store=`` option gets.
"""

from __future__ import annotations

from wsgi_session.backends.base import Backend, BackendFactory, CookieUpdate
from wsgi_session.backends.cookie import CookieBackend, CookieStore
from wsgi_session.backends.factory import default_store, make_backend
from wsgi_session.backends.server import ServerSideBackend

__all__ = [
    "Backend",
    "BackendFactory",
    "CookieBackend",
    "CookieStore",
    "CookieUpdate",
    "ServerSideBackend",
    "default_store",
    "make_backend",
]
