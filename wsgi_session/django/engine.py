"""A Django session engine: ``SESSION_ENGINE = "wsgi_session.django.engine"``.

Nothing else changes in a project: Django's own ``SessionMiddleware``, its
test ``Client``, ``manage.py clearsessions`` and the admin work as with the
built-in engines. :class:`SessionStore` keeps every promise of Django's
``SessionBase`` and adds what those engines lack, using the middleware's own
pieces rather than copies of them:

- the session key Django puts in the cookie is the signed 256-bit id of the
  server-side backend (:class:`~wsgi_session.backends.ServerSideBackend`);
  the store key is a hash of the id, so a leaked store holds no usable cookie;
- records are the record codec's, with tagged JSON data (never pickle);
- saves are compare-and-set with the middleware's merge
  (:class:`~wsgi_session.backends.cas.RecordWriter`): concurrent requests keep
  each other's keys, and a logout is never undone by a request in flight
  (its save raises ``UpdateError``, which Django answers as ``SessionInterrupted``);
- with :func:`server_error` as ``handler500`` a store outage answers 503, not 500;
- every write goes through the backend's own write paths, so
  ``WSGI_SESSION_SEAL_RECORDS = True`` seals the records and the owner index
  follows ``_auth_user_id`` (or ``WSGI_SESSION_OWNER_KEY``; ``None``: no
  owners), as with the middleware: :func:`sessions` lists and revokes a user's
  sessions.

The store comes from ``settings.WSGI_SESSION_STORE`` (a store URL), else the
embedded SQLite file; ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` sign the ids,
``SESSION_COOKIE_AGE`` is the default idle timeout, and ``_session_expiry`` in
the data is Django's own ``set_expiry`` value, read by Django's own getters.
"""

from __future__ import annotations

import sys
from functools import cache, cached_property
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from wsgi_session.backends import ServerSideBackend
from wsgi_session.backends.owners import Sessions
from wsgi_session.cookies import CookiePolicy, KeyRing
from wsgi_session.django import (
    _SETTING_NAMES,
    ENGINE,
    EXPIRY_KEY,
    MIGRATION_SETTINGS,
    OWNER_KEY,
    _expired,
    _sealing_from_settings,
    _store_from_settings,
    migration_from_settings,
)
from wsgi_session.errors import ConfigurationError, StoreUnavailable
from wsgi_session.lifetime import Lifetime
from wsgi_session.middleware import UNAVAILABLE_BODY, adoption_for
from wsgi_session.record import Record
from wsgi_session.serialization import dumps, loads
from wsgi_session.session import Origin, Session, new_session_id
from wsgi_session.stores.base import Store

__all__ = [
    "EngineBackend",
    "SessionStore",
    "TaggedJSONSerializer",
    "check_settings",
    "server_error",
    "sessions",
]

CREATE_ATTEMPTS = 10  # a fresh 256-bit id does not collide; more means the store is broken
_SETTINGS = frozenset(
    {
        "SECRET_KEY",
        "SECRET_KEY_FALLBACKS",
        "SESSION_COOKIE_AGE",
        "WSGI_SESSION_STORE",
        "WSGI_SESSION_SEAL_RECORDS",
        "WSGI_SESSION_REQUIRE_SEALED",
        "WSGI_SESSION_OWNER_KEY",
        "SESSION_COOKIE_NAME",
        "SESSION_COOKIE_PATH",
        "SESSION_COOKIE_DOMAIN",
        *MIGRATION_SETTINGS,
    }
)


class TaggedJSONSerializer:
    """Django's serializer interface over the project's tagged JSON (no pickle)."""

    def dumps(self, obj: Any) -> bytes:
        return dumps(obj).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return loads(data.decode("utf-8"))


class EngineBackend(ServerSideBackend):
    """The server-side backend, keeping sessions as Django's engines keep them.

    A session stored without data is a session: ``create()`` and ``save()``
    store one (``exists()`` is then true), and one the application emptied
    keeps its key. The middleware's emptied sessions end instead.
    """

    empty_is_session = True


def _backend() -> ServerSideBackend:
    """The server-side backend built from the settings; rebuilt when one of them changes."""
    return _build_backend()


@cache
def _build_backend() -> ServerSideBackend:
    store = _store_from_settings()
    if not isinstance(store, Store):
        raise ImproperlyConfigured(
            "settings.WSGI_SESSION_STORE: the engine keeps sessions in a server-side store; "
            "for sessions in the cookie use Django's signed_cookies engine"
        )
    try:
        keys = KeyRing(settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS)
        lifetime = Lifetime(idle_timeout=settings.SESSION_COOKIE_AGE)
        migration = migration_from_settings()
        cookie = CookiePolicy(
            settings.SESSION_COOKIE_NAME,
            settings.SESSION_COOKIE_DOMAIN,
            settings.SESSION_COOKIE_PATH,
        )
        return EngineBackend(
            store,
            keys,
            lifetime,
            getattr(settings, "WSGI_SESSION_OWNER_KEY", OWNER_KEY),
            **_sealing_from_settings(),
            adoption=adoption_for(
                migration["migrate_from"],
                keys,
                cookie,
                lifetime,
                migration["migrate_grace"],
                migration["migrate_keep_old"],
            ),
        )
    except ConfigurationError as exc:
        raise ImproperlyConfigured(exc.naming(_SETTING_NAMES)) from exc


def sessions() -> Sessions:
    """List and revoke a user's sessions (docs/sessions-per-user.md) kept by the engine."""
    return _backend().sessions


def _settings_changed(setting: str, **kwargs: object) -> None:
    if setting in _SETTINGS:
        _build_backend.cache_clear()


setting_changed.connect(_settings_changed)


@checks.register
def check_settings(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """Django's system check of the engine's settings, run at start-up.

    Requests build the backend at their session's first use only (so that one
    that never uses it is served whatever the settings), so a bad setting is
    reported here: by ``manage.py check``, ``runserver``, ``migrate`` and the
    test runner, once this module is imported (``"wsgi_session.django"`` in
    ``INSTALLED_APPS`` imports it).
    """
    if settings.SESSION_ENGINE != ENGINE:
        return []
    try:
        _backend()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), obj=ENGINE, id="wsgi_session.E001")]
    return []


class SessionStore(SessionBase):
    """Django's ``SessionBase`` over the middleware's server-side backend.

    ``session_key`` is the signed id; the data is a
    :class:`~wsgi_session.session.Session`, which knows which keys this
    request changed, so a save that finds a newer record merges into it.
    """

    def __init__(self, session_key: str | None = None) -> None:
        # Nothing is read or built here: a request that never uses its session
        # pays for nothing and is served whatever the settings (check_settings
        # reports a bad one at start-up).
        self._raw: Session | None = None
        self._created_id: str | None = None  # the id whose record this object created
        self._key: str | None = None  # verified
        self._unverified_key: str | None = None  # given, verified at its first use
        # A cookie that did not verify (another server's key, a tampered value):
        # never looked up, and not reported empty, so Django's middleware does not
        # delete it unless this request writes the session.
        self._unverified_cookie = False
        # Another system's cookie, perhaps (WSGI_SESSION_MIGRATE_FROM): the given key
        # that did not verify, offered for adoption.
        self._old_cookie: str | None = None
        super().__init__(session_key)
        self.serializer = TaggedJSONSerializer

    @cached_property
    def backend(self) -> ServerSideBackend:
        """The backend the settings build, at this session's first use."""
        return _backend()

    # -- the key ---------------------------------------------------------

    def _get_session_key(self) -> str | None:
        given = self._unverified_key
        if given is not None:
            self._unverified_key = None
            self._key = given if self._validate_session_key(given) else None
            self._unverified_cookie = self._key is None
            self._old_cookie = given if self._key is None else None
        return self._key

    def _set_session_key(self, value: str | None) -> None:
        self._unverified_key = value
        self._key = None

    session_key = property(_get_session_key)
    _session_key = property(_get_session_key, _set_session_key)

    def _validate_session_key(self, key: object) -> bool:
        """Only an id we signed (with the current or a fallback key) is a key."""
        return isinstance(key, str) and self.backend.verify(key) is not None

    def _session_id(self, key: str) -> str:
        verified = self.backend.verify(key)
        assert verified is not None  # validated on assignment
        return verified[0]

    # -- the data --------------------------------------------------------

    def _get_session(self, no_load: bool = False) -> Session:
        self.accessed = True
        if self._raw is None:
            self._raw = Session(self._open_fresh if no_load else self._open)
        return self._raw

    _session = property(_get_session)

    @property
    def raw(self) -> Session:
        """The request's :class:`~wsgi_session.session.Session`: ``sessions().revoke(keep=)``."""
        return self._get_session()

    async def _aget_session(self, no_load: bool = False) -> Session:
        if self._raw is not None and self._raw.accessed:
            self.accessed = True
            return self._raw
        session = self._get_session(no_load)
        await sync_to_async(lambda: session.origin)()  # the store's I/O off the event loop
        return session

    def _open_fresh(self) -> Origin:
        return Origin.fresh(self.backend.clock())

    def _open(self) -> Origin:
        """What the key names; a fresh session (and no key) if nothing live."""
        key = self.session_key
        if key is None:
            if self._old_cookie is None or self.backend.adoption is None:
                return self._open_fresh()
            key = self._old_cookie  # adopted, the origin is ours and must be re-sent (resign)
        origin = self.backend.open(key)
        if origin.new or _expired(origin.data.get(EXPIRY_KEY), self.backend.clock()):
            self._session_key = None
            return self._open_fresh()
        if origin.resign:
            # Signed with a fallback key: the response sends it signed with the current one.
            self._session_key = self.backend.signer.sign(origin.id)
            self.modified = True
        return origin

    def _rebase(self, session_id: str, record: Record) -> None:
        """After a write: ``record``, as stored under ``session_id``, is the new starting point.

        Its compare-and-set version is unknown, so the next save merges this
        request's changes since (``Session.changes()``) into the stored record.
        """
        origin = record.origin(session_id, resign=False)
        self._raw = Session(lambda: origin)

    def load(self) -> dict[str, Any]:
        """The stored data (a copy); never creates a record."""
        self._raw = Session(self._open)
        return dict(self._raw)

    def is_empty(self) -> bool:
        if self._unverified_key is not None and self._raw is None and not self.modified:
            return False  # a cookie the request never used: not deleted, not even verified
        if self.session_key or (self._raw is not None and self._raw.accessed and self._raw):
            return False
        return not (self._unverified_cookie and not self.modified)

    def clear(self) -> None:
        # Loaded first: the merge must know which keys this request removed.
        self._get_session().clear()
        self.modified = True

    # -- the store -------------------------------------------------------

    def exists(self, session_key: str) -> bool:
        return not self.backend.open(session_key).new

    def create(self) -> None:
        for _ in range(CREATE_ATTEMPTS):
            self._session_key = self.backend.signer.sign(new_session_id())
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise RuntimeError("could not create a session record: the store refuses new keys")

    def _record(self, session: Session, moved: bool = False) -> Record:
        """What to store: the data, Django's expiry as the record's flags, the owner.

        Set on the session first, so a merge keeps this request's expiry only
        where it changed it, as it does for the middleware's sessions.
        """
        session.permanent = not self.get_expire_at_browser_close()
        session.idle_timeout = max(1, self.get_expiry_age())
        return self.backend.record(session, session.serialize(), self.backend.clock(), moved)

    def save(self, must_create: bool = False) -> None:
        key = self.session_key
        if key is None:
            return self.create()
        session = self._get_session(no_load=must_create)
        record = self._record(session)
        session_id = self._session_id(key)
        backend = self.backend
        if must_create:
            if not backend.write_new(session_id, session, record, exclusive=True):
                raise CreateError
            self._created_id = session_id
            self._rebase(session_id, record)
            return None
        origin = session.origin
        if origin.new:  # not found when loaded
            raise UpdateError
        # After a write earlier in this request the version is unknown (None):
        # update() then merges this request's changes since that write into
        # the stored record, which a concurrent request may have changed.
        saved = backend.update(session_id, session, record, origin.version)
        if saved is None or saved[1] is None or saved[0].key != backend.store_key(session_id):
            # Deleted by a concurrent logout (never resurrected), or moved by a
            # concurrent login, whose response carries the new key: ours must not
            # replace it. The changes were merged into the new record, unless
            # that login made it another owner's (then they are dropped).
            raise UpdateError
        self._rebase(origin.id, saved[1])
        return None

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            session_key = self.session_key
            if session_key is None:
                return
        verified = self.backend.verify(session_key)
        if verified is None:
            return
        loaded = self._raw
        if loaded is not None and not (loaded.accessed and loaded.origin.id == verified[0]):
            loaded = None  # another session's key: its index entry lapses by itself
        self.backend.remove(verified[0], loaded)

    def cycle_key(self) -> None:
        """New key, same data; the old record stops loading but forwards concurrent writes.

        A session with no stored record (new, or flushed: a logout, then a
        login in the same request) is created under a new key instead, as
        Django's engines do.
        """
        session = self._get_session()
        old = session.origin
        if old.new:
            self.create()
            return
        session.regenerate()
        record = self._record(session, moved=True)
        # Created by this request: nobody else holds its id, so it is deleted.
        retire = old.id != self._created_id
        outcome = self.backend.move(old.id, session.id, session, record, retire=retire)
        self._session_key = self.backend.signer.sign(session.id)
        self.modified = True
        if outcome == "destroyed":
            # The old record was deleted meanwhile (a logout, a revocation): the
            # session it started from is over and must not live on under a new key.
            raise UpdateError
        self._rebase(session.id, record)

    async def acycle_key(self) -> None:
        await sync_to_async(self.cycle_key)()

    def flush(self) -> None:
        super().flush()  # verifies the key, if nothing did yet
        self._unverified_cookie = False  # a logout expires whatever cookie came
        # What the request stores from now on is a new session (a login after the
        # logout cycles into a create): nothing of the deleted one's record is kept.
        self._raw = Session(self._open_fresh)

    async def aflush(self) -> None:
        await sync_to_async(self.flush)()

    @classmethod
    def clear_expired(cls) -> None:
        """Purge expired records where the store keeps them (SQLite, memory); others expire them."""
        purge = getattr(_backend().store, "purge_expired", None)
        if purge is not None:
            purge()


def server_error(request: HttpRequest, template_name: str = "500.html") -> HttpResponse:
    """``handler500`` for a project's ``urls.py``: 503 when the session store is down.

    Django turns every uncaught exception into its 500 page; the one line
    ``handler500 = "wsgi_session.django.engine.server_error"`` makes a store
    outage a 503 with ``Retry-After`` (any other error still gets Django's 500).
    """
    if isinstance(sys.exc_info()[1], StoreUnavailable):
        response = HttpResponse(
            UNAVAILABLE_BODY, status=503, content_type="text/plain; charset=utf-8"
        )
        response["Retry-After"] = "1"
        return response
    return defaults.server_error(request, template_name)
