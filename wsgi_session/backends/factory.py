"""Which backend a ``store=`` option gets."""

from __future__ import annotations

from wsgi_session.backends.adoption import Adoption
from wsgi_session.backends.base import Backend, BackendFactory, BaseBackend
from wsgi_session.backends.server import ServerSideBackend
from wsgi_session.backends.slots import check_sealing
from wsgi_session.cookies import KeyRing
from wsgi_session.errors import ConfigurationError
from wsgi_session.lifetime import Lifetime
from wsgi_session.metrics.audit import AuditLog
from wsgi_session.metrics.base import NO_METRICS, Metrics
from wsgi_session.stores.base import Store


def default_store() -> Store:
    """The embedded SQLite store in its default location (which it logs)."""
    from wsgi_session.stores.sqlite import SQLiteStore  # only when it is the one used

    return SQLiteStore()


def make_backend(
    store: Store | BackendFactory | None,
    keys: KeyRing,
    lifetime: Lifetime,
    *,
    owner_key: str | None = None,
    seal_records: bool = False,
    require_sealed: bool = False,
    metrics: Metrics = NO_METRICS,
    audit: AuditLog | None = None,
    adoption: Adoption | None = None,
) -> Backend:
    """The backend for ``store``; ``None`` means the embedded SQLite default.

    ``owner_key``: the key of the session data naming its owner (see
    :mod:`wsgi_session.backends.owners`); stores that bring their own backend keep none.
    ``metrics``, ``audit``: where the backend reports (docs/operations.md);
    ``adoption``: the sessions of a migration source it adopts (docs/migrating.md).
    """
    if store is None:
        store = default_store()
    if isinstance(store, BackendFactory):
        check_sealing(seal_records, require_sealed)
        if seal_records:
            raise ConfigurationError(
                "{seal_records}=True seals a server-side store's records; {store} is "
                "{kind}, which keeps no records (the cookie store encrypts with encrypt=True)",
                "seal_records",
                "store",
                kind=type(store).__name__,
            )
        if adoption is not None:
            raise ConfigurationError(
                "{migrate_from} adopts old sessions into a server-side store; {store} is "
                "{kind}, which keeps no records",
                "migrate_from",
                "store",
                kind=type(store).__name__,
            )
        backend = store.make_backend(keys, lifetime)
        if metrics.enabled or audit is not None:
            if not isinstance(backend, BaseBackend):
                raise ConfigurationError(
                    "{metrics} and {audit} need a backend that reports its commits (a "
                    "BaseBackend); {store} gives {kind}",
                    "metrics",
                    "audit",
                    "store",
                    kind=type(backend).__name__,
                )
            backend.report_to(metrics, audit)
        return backend
    if isinstance(store, Store):
        return ServerSideBackend(
            store,
            keys,
            lifetime,
            owner_key,
            seal_records=seal_records,
            require_sealed=require_sealed,
            metrics=metrics,
            audit=audit,
            adoption=adoption,
        )
    raise ConfigurationError(
        "{store} must implement load/save/delete (the Store protocol) or make_backend, not {kind}",
        "store",
        kind=type(store).__name__,
    )
