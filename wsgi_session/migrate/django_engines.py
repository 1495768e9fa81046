"""Django's session engines as a migration source (``django.contrib.sessions.backends.db`` ...).

The old session is read by Django's own ``SessionStore`` of the named engine
(``db``, ``cache``, ``cached_db``, ``file``, ``signed_cookies``), under the
project's own settings: its serializer, its ``SESSION_COOKIE_AGE``, its
expiry rules. What Django's auth keeps (``_auth_user_id``,
``_auth_user_backend``, ``_auth_user_hash``) carries over as it is, so the
user stays logged in. A project whose ``SESSION_SERIALIZER`` unpickles is
refused at start-up: old records are never unpickled.
"""

from __future__ import annotations

import importlib
import math
import re
from typing import Any

from wsgi_session.errors import ConfigurationError, StoreUnavailable
from wsgi_session.migrate.base import Claim, Host, OldCookie

SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"
# The keys Django's server-side engines make (get_random_string(32, VALID_KEY_CHARS)).
_KEY = re.compile(r"[a-z0-9]{32}")
MAX_COOKIE = 8192


class DjangoEngineSource:
    """The sessions a ``django.contrib.sessions`` engine kept, read by its ``SessionStore``."""

    def __init__(self, engine: str, host: Host) -> None:
        from django.conf import settings

        serializer = str(getattr(settings, "SESSION_SERIALIZER", ""))
        if "pickle" in serializer.lower():
            raise ConfigurationError(
                "{migrate_from} {engine}: SESSION_SERIALIZER {serializer} unpickles, and old "
                "sessions are never unpickled; convert them to JSON first (docs/migrating.md)",
                "migrate_from",
                engine=engine,
                serializer=serializer,
            )
        try:
            self.store_class: Any = importlib.import_module(engine).SessionStore
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(
                "{migrate_from} {engine} is not a Django session engine ({problem})",
                "migrate_from",
                engine=engine,
                problem=exc,
            ) from None
        self.signed = engine == SIGNED_COOKIES
        self.description = engine
        self.cookie: OldCookie | None = OldCookie(
            settings.SESSION_COOKIE_NAME,
            settings.SESSION_COOKIE_PATH,
            settings.SESSION_COOKIE_DOMAIN,
        )

    def identify(self, cookie: str) -> str | None:
        if self.signed:
            # The session is the cookie: its signature is checked locally (Django
            # compares it as text, so no other spelling passes).
            ok = len(cookie) <= MAX_COOKIE and bool(self._load(cookie)[1])
            return cookie if ok else None
        return cookie if _KEY.fullmatch(cookie) else None

    def _load(self, cookie: str) -> tuple[Any, dict[str, Any]]:
        store = self.store_class(cookie)
        try:
            data = store.load()
        except Exception as exc:  # the engine's database or cache is down
            raise StoreUnavailable(f"{self.description}: {type(exc).__name__}: {exc}") from exc
        return store, data if isinstance(data, dict) else {}

    def claim(self, cookie: str) -> Claim | None:
        store, data = self._load(cookie)
        if not data:
            return None  # none, expired, or not what Django signed: Django starts afresh too
        store._session_cache = data  # what Django's getters below read, loaded once
        remaining = min(store.get_expiry_age(), self._row_left(store, cookie))
        if remaining <= 0:
            return None
        permanent = not store.get_expire_at_browser_close()
        return Claim(dict(data), permanent, float(remaining), self.cookie, handle=store)

    @staticmethod
    def _row_left(store: Any, key: str) -> float:
        """Seconds the database row has left (db, cached_db): its ``expire_date``.

        ``get_expiry_age()`` counts from now; the row's date counts from its
        last save, which is when the old session really ends.
        """
        model = getattr(store, "get_model_class", None)
        if model is None:
            return math.inf
        from django.utils import timezone

        try:
            rows = model().objects.filter(session_key=key).values_list("expire_date", flat=True)
            expires = rows.first()
        except Exception as exc:  # the engine's database is down
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return math.inf if expires is None else (expires - timezone.now()).total_seconds()

    def retire(self, claim: Claim) -> None:
        try:
            claim.handle.delete()  # type: ignore[attr-defined]
        except Exception as exc:
            raise StoreUnavailable(f"{self.description}: {type(exc).__name__}: {exc}") from exc

    def ping(self) -> None:
        if not self.signed:
            self._load("0" * 32)
