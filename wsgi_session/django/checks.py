"""Django system checks of ``settings.WSGI_SESSION_STORE`` (``manage.py check``).

The URL is checked always; the store's table and whether its server answers only
with ``--database`` (and by ``migrate``), which is when Django's checks may reach
a database. A table the pending migration creates is a warning, so that
``migrate`` itself is not stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from wsgi_session.django import ENGINE, _store_from_settings
from wsgi_session.django.store import DjangoDatabaseStore
from wsgi_session.errors import StoreUnavailable
from wsgi_session.stores.base import Schema

SETTING = "settings.WSGI_SESSION_STORE"


@checks.register()
def check_store_setting(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """The store URL names a store that can be built (the engine's own check says it for it)."""
    if not getattr(settings, "WSGI_SESSION_STORE", None) or settings.SESSION_ENGINE == ENGINE:
        return []
    try:
        _close(_store_from_settings())
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="wsgi_session.E001")]
    return []


@checks.register(checks.Tags.database)
def check_store_table(
    app_configs: Sequence[AppConfig] | None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[checks.CheckMessage]:
    """The store answers, and its table is there with the columns it needs."""
    if not databases or not getattr(settings, "WSGI_SESSION_STORE", None):
        return []
    try:
        store = _store_from_settings()
    except ImproperlyConfigured:
        return []  # check_store_setting says why
    if not isinstance(store, Schema):
        return []
    if isinstance(store, DjangoDatabaseStore) and store.alias not in databases:
        return []
    try:
        if isinstance(store, DjangoDatabaseStore) and not store.has_table():
            return [
                checks.Warning(
                    f"{SETTING}: {'; '.join(store.schema_problems())}", id="wsgi_session.W001"
                )
            ]
        problems = store.schema_problems()
    except StoreUnavailable as exc:
        return [checks.Error(f"{SETTING}: {exc}", id="wsgi_session.E002")]
    finally:
        _close(store)
    return [checks.Error(f"{SETTING}: {problem}", id="wsgi_session.E003") for problem in problems]


def _close(store: object) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        close()
