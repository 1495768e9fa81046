"""Sessions for any WSGI application."""

from __future__ import annotations

__version__ = "0.2.0"

from typing import TYPE_CHECKING, Any

from wsgi_session.backends import (
    Backend,
    BackendFactory,
    CookieStore,
    CookieUpdate,
    ServerSideBackend,
)
from wsgi_session.backends.owners import SessionInfo, Sessions
from wsgi_session.config import wrap
from wsgi_session.cookies import CookiePolicy, KeyRing
from wsgi_session.errors import (
    ConfigurationError,
    SessionError,
    SessionSealed,
    SessionsUnsupported,
    SessionTooLarge,
    StoreUnavailable,
    StoreWriteFailed,
)
from wsgi_session.lifetime import Lifetime
from wsgi_session.metrics import (
    AuditLog,
    Metrics,
    NullMetrics,
    OpenTelemetryMetrics,
    PrometheusMetrics,
)
from wsgi_session.middleware import BaseSessionMiddleware, SessionMiddleware
from wsgi_session.session import Origin, Session
from wsgi_session.stores.base import IndexedWrites, OwnerIndex, RecordScan, Store
from wsgi_session.stores.memcached import MemcachedStore
from wsgi_session.stores.memory import MemoryStore
from wsgi_session.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from wsgi_session.stores.postgres import PostgresStore
    from wsgi_session.stores.redis import RedisStore

__all__ = [
    "AuditLog",
    "Backend",
    "BackendFactory",
    "BaseSessionMiddleware",
    "ConfigurationError",
    "CookiePolicy",
    "CookieStore",
    "CookieUpdate",
    "IndexedWrites",
    "KeyRing",
    "Lifetime",
    "MemcachedStore",
    "MemoryStore",
    "Metrics",
    "NullMetrics",
    "OpenTelemetryMetrics",
    "Origin",
    "OwnerIndex",
    "PostgresStore",
    "PrometheusMetrics",
    "RecordScan",
    "RedisStore",
    "SQLiteStore",
    "ServerSideBackend",
    "Session",
    "SessionError",
    "SessionInfo",
    "SessionMiddleware",
    "SessionSealed",
    "SessionTooLarge",
    "Sessions",
    "SessionsUnsupported",
    "Store",
    "StoreUnavailable",
    "StoreWriteFailed",
    "wrap",
]


def __getattr__(name: str) -> Any:
    # RedisStore needs redis-py (the [redis] extra), PostgresStore psycopg (the
    # [postgres] extra): imported on first use only, so the package imports without them.
    if name == "RedisStore":
        from wsgi_session.stores.redis import RedisStore

        return RedisStore
    if name == "PostgresStore":
        from wsgi_session.stores.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
