"""Django adapter, the ``wsgi.py`` mode: ``request.session`` kept by the WSGI middleware.

Most projects want the one-setting engine instead
(``SESSION_ENGINE = "wsgi_session.django.engine"``, :mod:`wsgi_session.django.engine`);
this mode is for one session shared by Django and other WSGI apps in one process.

``make_middleware`` wraps Django's WSGI application (in ``wsgi.py``) and takes
the cookie and timeout options from Django's ``SESSION_*`` settings; the Django
middleware :class:`SessionMiddleware` replaces
``django.contrib.sessions.middleware.SessionMiddleware`` in ``MIDDLEWARE`` and
gives each request a :class:`DjangoSession` over the request's
:class:`~wsgi_session.session.Session`. WSGI only: Django under ASGI never
passes through the WSGI middleware.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, ItemsView, Iterable, KeysView, Mapping, ValuesView
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NoReturn, TypedDict

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.deprecation import MiddlewareMixin

from wsgi_session.backends import Backend, BackendFactory, CookieUpdate, default_store
from wsgi_session.backends.adoption import DEFAULT_GRACE
from wsgi_session.backends.owners import Sessions
from wsgi_session.config import store_from_url
from wsgi_session.cookies import CookiePolicy
from wsgi_session.errors import ConfigurationError
from wsgi_session.middleware import SessionMiddleware as WSGISessionMiddleware
from wsgi_session.session import Origin, Session
from wsgi_session.stores.base import Store
from wsgi_session.view import SessionView
from wsgi_session.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

MIDDLEWARE_KEY = "wsgi_session.django"
ENGINE = "wsgi_session.django.engine"  # the SESSION_ENGINE setting naming ours
"""Where the WSGI middleware made by :func:`make_middleware` puts itself in the environ."""

EXPIRY_KEY = "_session_expiry"
"""Django's key for a fixed expiry date (ISO 8601), kept in the session data as Django does."""

OWNER_KEY = "_auth_user_id"  # where django.contrib.auth keeps the logged-in user's id

_NOT_GIVEN: Any = object()
_DJANGO_DB_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
_SETUP_HINT = (
    "wrap the WSGI application in wsgi.py: "
    "application = make_middleware(get_wsgi_application()) "
    "with 'from wsgi_session.django import make_middleware'"
)


def make_middleware(
    application: WSGIApplication,
    *,
    store: Store | BackendFactory | None = None,
    absolute_timeout: int | None = None,
    refresh_interval: int | None = None,
    cookie_partitioned: bool = False,
    on_store_error: Literal["fail", "degrade"] = "fail",
    owner_key: str | None = OWNER_KEY,
    record_client: bool = False,
    clock: Callable[[], float] = time.time,
) -> WSGISessionMiddleware:
    """Wrap Django's WSGI application in the session middleware.

    The secret and the cookie, lifetime and save options come from Django's
    settings (``SECRET_KEY``, ``SECRET_KEY_FALLBACKS``, ``SESSION_COOKIE_*``,
    ``SESSION_EXPIRE_AT_BROWSER_CLOSE``, ``SESSION_SAVE_EVERY_REQUEST``), so
    Django and the middleware never disagree about them; the arguments are
    the options Django has no setting for. Without ``store``, the store URL in
    ``settings.WSGI_SESSION_STORE`` is used (``memcached://h1:11211,h2:11211``,
    ``sqlite:///var/lib/app/sessions.db``, ``memory://``), else the embedded
    SQLite default. ``settings.WSGI_SESSION_SEAL_RECORDS = True`` seals each
    record under a key derived from its session id (needs ``wsgi-session[crypto]``).
    A session's owner follows ``django.contrib.auth``'s ``_auth_user_id`` unless
    ``owner_key`` names another key (``None``: no owners); :func:`sessions` lists
    and revokes a user's sessions.
    """
    return _DjangoSessions(
        _Arguments(
            application,
            store,
            absolute_timeout,
            refresh_interval,
            cookie_partitioned,
            on_store_error,
            owner_key,
            record_client,
            clock,
        )
    )


def sessions(request: HttpRequest) -> Sessions:
    """List and revoke a user's sessions: the middleware's, or the engine's (SESSION_ENGINE)."""
    middleware = request.META.get(MIDDLEWARE_KEY)  # META is the WSGI environ
    if middleware is None and settings.SESSION_ENGINE == ENGINE:
        from wsgi_session.django import engine  # imports this module: not at the top

        return engine.sessions()
    if not isinstance(middleware, _DjangoSessions):
        raise ImproperlyConfigured(
            f"wsgi_session.django.sessions() needs the middleware: {_SETUP_HINT}"
        )
    return middleware.sessions


MIGRATION_SETTINGS = (
    "WSGI_SESSION_MIGRATE_FROM",
    "WSGI_SESSION_MIGRATE_GRACE",
    "WSGI_SESSION_MIGRATE_KEEP_OLD",
)
_SETTINGS = frozenset(
    {
        "SECRET_KEY",
        "SECRET_KEY_FALLBACKS",
        "SESSION_COOKIE_NAME",
        "SESSION_COOKIE_AGE",
        "SESSION_COOKIE_DOMAIN",
        "SESSION_COOKIE_PATH",
        "SESSION_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "SESSION_COOKIE_SAMESITE",
        "SESSION_EXPIRE_AT_BROWSER_CLOSE",
        "SESSION_SAVE_EVERY_REQUEST",
        "WSGI_SESSION_STORE",
        "WSGI_SESSION_SEAL_RECORDS",
        "WSGI_SESSION_REQUIRE_SEALED",
        "WSGI_SESSION_METRICS",
        "WSGI_SESSION_AUDIT",
        *MIGRATION_SETTINGS,
    }
)
"""The settings the middleware is built from; override_settings on them rebuilds it."""


@dataclass(frozen=True)
class _Arguments:
    """What make_middleware was given: the options Django has no setting for."""

    application: WSGIApplication
    store: Store | BackendFactory | None
    absolute_timeout: int | None
    refresh_interval: int | None
    cookie_partitioned: bool
    on_store_error: Literal["fail", "degrade"]
    owner_key: str | None
    record_client: bool
    clock: Callable[[], float]


class _DjangoSessions(WSGISessionMiddleware):
    """The WSGI middleware configured from Django's settings, findable from the request.

    Like Django's own session middleware it follows ``override_settings``: a
    change to one of the settings it reads rebuilds the cookie policy, the
    lifetime and the backend (the store is kept unless its URL changed).
    """

    def __init__(self, arguments: _Arguments) -> None:
        self.arguments = arguments
        self.store = _store_from_settings() if arguments.store is None else arguments.store
        self._configure()
        setting_changed.connect(self._setting_changed)  # weakly: it goes with the middleware

    def _setting_changed(self, setting: str, **kwargs: object) -> None:
        if setting == "WSGI_SESSION_STORE" and self.arguments.store is None:
            self.store = _store_from_settings()
        if setting in _SETTINGS:
            self._configure()

    def _configure(self) -> None:
        arguments = self.arguments
        self.save_every_request = bool(settings.SESSION_SAVE_EVERY_REQUEST)
        refresh_interval = arguments.refresh_interval
        if self.save_every_request and refresh_interval is None:
            refresh_interval = 0  # Django rewrites the session on every request
        try:
            super().__init__(
                arguments.application,
                settings.SECRET_KEY,
                fallback_keys=settings.SECRET_KEY_FALLBACKS,
                store=self.store,
                cookie_name=settings.SESSION_COOKIE_NAME,
                cookie_domain=settings.SESSION_COOKIE_DOMAIN,
                cookie_path=settings.SESSION_COOKIE_PATH,
                # False is Django's "no Secure attribute"; None still adds it on https.
                cookie_secure=True if settings.SESSION_COOKIE_SECURE else None,
                cookie_httponly=settings.SESSION_COOKIE_HTTPONLY,
                cookie_samesite=settings.SESSION_COOKIE_SAMESITE or None,
                cookie_partitioned=arguments.cookie_partitioned,
                idle_timeout=settings.SESSION_COOKIE_AGE,
                absolute_timeout=arguments.absolute_timeout,
                refresh_interval=refresh_interval,
                refresh_each_request=self.save_every_request,
                on_store_error=arguments.on_store_error,
                **_sealing_from_settings(),
                **migration_from_settings(),
                owner_key=arguments.owner_key,
                record_client=arguments.record_client,
                metrics=getattr(settings, "WSGI_SESSION_METRICS", None),
                audit=bool(getattr(settings, "WSGI_SESSION_AUDIT", False)),
                clock=arguments.clock,
            )
        except ConfigurationError as exc:
            raise ImproperlyConfigured(exc.naming(_SETTING_NAMES)) from exc
        self.permanent_by_default = not settings.SESSION_EXPIRE_AT_BROWSER_CLOSE
        self.django_backend = _DjangoBackend(self.backend, self)
        self.proxied_https_policy = replace(self.policy, secure=True)

    def backend_for(self, environ: WSGIEnvironment) -> Backend:
        return self.django_backend

    def cookie_policy(self, environ: WSGIEnvironment) -> CookiePolicy:
        # "Secure on https" must see https the way Django does: behind a TLS
        # proxy that Django is told to trust (SECURE_PROXY_SSL_HEADER).
        if self.policy.secure is None and _forwarded_https(environ):
            return self.proxied_https_policy
        return self.policy

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[MIDDLEWARE_KEY] = self
        return super().__call__(environ, start_response)


_SETTING_NAMES = {
    "secret_key": "SECRET_KEY",
    "fallback_keys": "SECRET_KEY_FALLBACKS",
    "cookie_name": "SESSION_COOKIE_NAME",
    "cookie_domain": "SESSION_COOKIE_DOMAIN",
    "cookie_path": "SESSION_COOKIE_PATH",
    "cookie_secure": "SESSION_COOKIE_SECURE",
    "cookie_httponly": "SESSION_COOKIE_HTTPONLY",
    "cookie_samesite": "SESSION_COOKIE_SAMESITE",
    "idle_timeout": "SESSION_COOKIE_AGE",
    "seal_records": "WSGI_SESSION_SEAL_RECORDS",
    "require_sealed": "WSGI_SESSION_REQUIRE_SEALED",
    "metrics": "WSGI_SESSION_METRICS",
    "audit": "WSGI_SESSION_AUDIT",
    "migrate_from": "WSGI_SESSION_MIGRATE_FROM",
    "migrate_grace": "WSGI_SESSION_MIGRATE_GRACE",
}


class Migration(TypedDict):
    migrate_from: str | None
    migrate_grace: int
    migrate_keep_old: bool


def migration_from_settings() -> Migration:
    """The sessions to adopt (docs/migrating.md), from their ``WSGI_SESSION_*`` settings."""
    return {
        "migrate_from": getattr(settings, "WSGI_SESSION_MIGRATE_FROM", None) or None,
        "migrate_grace": getattr(settings, "WSGI_SESSION_MIGRATE_GRACE", DEFAULT_GRACE),
        "migrate_keep_old": bool(getattr(settings, "WSGI_SESSION_MIGRATE_KEEP_OLD", False)),
    }


class _Sealing(TypedDict):
    seal_records: bool
    require_sealed: bool


def _sealing_from_settings() -> _Sealing:
    """``seal_records`` and ``require_sealed`` from their ``WSGI_SESSION_*`` settings."""
    return {
        "seal_records": bool(getattr(settings, "WSGI_SESSION_SEAL_RECORDS", False)),
        "require_sealed": bool(getattr(settings, "WSGI_SESSION_REQUIRE_SEALED", False)),
    }


def _store_from_settings() -> Store | BackendFactory:
    """The store ``settings.WSGI_SESSION_STORE`` names, else the embedded default."""
    url = getattr(settings, "WSGI_SESSION_STORE", None)
    if not url:
        return default_store()
    try:
        if isinstance(url, str) and url.strip().lower().startswith("django:"):
            from wsgi_session.django.store import DjangoDatabaseStore  # needs the app registry

            return DjangoDatabaseStore.from_url(url)
        return store_from_url(url)
    except ConfigurationError as exc:
        raise ImproperlyConfigured(f"settings.WSGI_SESSION_STORE: {exc}") from exc


class _DjangoBackend:
    """Adds Django's expiry rules to a backend.

    New sessions start permanent unless ``SESSION_EXPIRE_AT_BROWSER_CLOSE``,
    and a session past the date given to ``set_expiry(datetime)`` is not
    loaded (refreshes of an active session must not carry it past that date).
    """

    def __init__(self, backend: Backend, middleware: _DjangoSessions) -> None:
        self.backend = backend
        self.middleware = middleware

    def open(self, cookie: str | None) -> Origin:
        origin = self.backend.open(cookie)
        now = self.middleware.lifetime.clock()
        if not origin.new and _expired(origin.data.get(EXPIRY_KEY), now):
            origin = Origin.fresh(now, stale_cookie=True)
        if origin.new:
            origin.permanent = self.middleware.permanent_by_default
        return origin

    def may_be_permanent(self, cookie: str) -> bool:
        return self.backend.may_be_permanent(cookie)

    def commit(self, session: Session) -> CookieUpdate | None:
        return self.backend.commit(session)


def _deadline(value: object) -> float | None:
    """The POSIX time of an ``EXPIRY_KEY`` value; ``None`` if it is not a date."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _expired(value: object, now: float) -> bool:
    deadline = _deadline(value)
    return deadline is not None and deadline <= now


class SessionMiddleware(DjangoSessionMiddleware):
    """Put in ``MIDDLEWARE`` where Django's ``SessionMiddleware`` was.

    A subclass of Django's so that the admin's system check accepts it; none of
    its storage code is used: the WSGI middleware loads and saves the session.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if _DJANGO_DB_MIDDLEWARE in settings.MIDDLEWARE:
            raise ImproperlyConfigured(
                f"MIDDLEWARE lists both {_DJANGO_DB_MIDDLEWARE!r} and "
                "'wsgi_session.django.SessionMiddleware'; remove Django's"
            )
        MiddlewareMixin.__init__(self, get_response)  # Django's __init__ loads SESSION_ENGINE

    def process_request(self, request: HttpRequest) -> None:
        try:
            attach(request, DjangoSession.of(request.META))
        except ImproperlyConfigured as exc:
            attach(request, _NoSession(str(exc)))
            raise

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        session = request.session
        if not isinstance(session, DjangoSession):
            return response
        if session.middleware.save_every_request:
            session.load()
        # The WSGI middleware adds Vary and Set-Cookie after Django is done, too
        # late for Django's cache middleware: say here what Django's own session
        # middleware says, so a per-user page is never cached for everyone.
        if session.accessed:
            patch_vary_headers(response, ("Cookie",))
            if session.modified:
                patch_cache_control(response, private=True)
        return response


def _forwarded_https(environ: WSGIEnvironment) -> bool:
    """Whether ``SECURE_PROXY_SSL_HEADER`` says this request came over https."""
    trusted = settings.SECURE_PROXY_SSL_HEADER
    if not trusted:
        return False
    header, secure_value = trusted
    forwarded = environ.get(header)
    return forwarded is not None and forwarded.split(",", 1)[0].strip() == secure_value


def attach(request: HttpRequest, session: DjangoSession | _NoSession) -> None:
    """Make ``session`` the request's ``request.session``."""
    # The stubs type request.session as SessionBase; DjangoSession is its API, not a subclass.
    request.session = session  # type: ignore[assignment]


class _NoSession:
    """``request.session`` when the WSGI middleware is missing: every use says why.

    Django's error handling touches the session too (with ``CSRF_USE_SESSIONS``
    the 500 view reads the CSRF secret); it must report the cause, not a
    missing attribute.
    """

    def __init__(self, message: str) -> None:
        self.message = message

    def _fail(self, *args: object) -> NoReturn:
        raise ImproperlyConfigured(self.message)

    __getattr__ = __contains__ = __getitem__ = __setitem__ = __delitem__ = _fail


class DjangoSession(SessionView):
    """Django's ``SessionBase`` API over the request's :class:`~wsgi_session.session.Session`.

    Everything is saved by the WSGI middleware when the response starts, so
    :meth:`save` only forces that write. ``set_expiry`` maps onto the
    session's ``permanent`` flag and its own idle timeout.
    """

    TEST_COOKIE_NAME = "testcookie"
    TEST_COOKIE_VALUE = "worked"

    def __init__(self, session: Session, middleware: _DjangoSessions) -> None:
        super().__init__(session)
        self.middleware = middleware

    @property
    def session(self) -> Session:
        """The request's :class:`~wsgi_session.session.Session` (also ``raw``)."""
        return self.raw

    @classmethod
    def of(cls, environ: WSGIEnvironment) -> DjangoSession:
        """The session of the request whose WSGI environ is ``environ``."""
        middleware = environ.get(MIDDLEWARE_KEY)
        if not isinstance(middleware, _DjangoSessions):
            raise ImproperlyConfigured(
                f"wsgi_session.django.SessionMiddleware found no session: {_SETUP_HINT}. "
                "(Django's test Client skips wsgi.py: use wsgi_session.django.test.Client.)"
            )
        return cls(environ[middleware.environ_key], middleware)

    # -- mapping (item access is SessionView's) -------------------------

    def pop(self, key: str, default: Any = _NOT_GIVEN) -> Any:
        if default is _NOT_GIVEN:
            return self.raw.pop(key)
        return self.raw.pop(key, default)

    def setdefault(self, key: str, value: Any) -> Any:
        return self.raw.setdefault(key, value)

    def update(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        self.raw.update(values)

    def keys(self) -> KeysView[str]:
        return self.raw.keys()

    def values(self) -> ValuesView[Any]:
        return self.raw.values()

    def items(self) -> ItemsView[str, Any]:
        return self.raw.items()

    def has_key(self, key: str) -> bool:
        return key in self.raw

    # -- state -----------------------------------------------------------

    @property
    def session_key(self) -> str | None:
        """The id the client holds after this response; ``None`` while the session is empty."""
        return None if self.is_empty() else self.raw.id

    def is_empty(self) -> bool:
        """True when the session holds nothing, so nothing is stored or sent."""
        return len(self.raw) == 0

    def load(self) -> dict[str, Any]:
        """The session data as a new dict (loads it if nothing has yet)."""
        return dict(self.raw)

    def save(self) -> None:
        """Force the write that happens when the response starts."""
        self.raw.modified = True

    def cycle_key(self) -> None:
        """New id, same data: the old id stops working (Django calls it on login)."""
        self.raw.regenerate()

    def flush(self) -> None:
        """Delete the stored session and expire the cookie (Django calls it on logout)."""
        self.raw.destroy()
        self.raw.permanent = self.middleware.permanent_by_default

    # -- expiry ----------------------------------------------------------

    def set_expiry(self, value: int | datetime | timedelta | None) -> None:
        """Seconds of inactivity, a date or a delta to expire at, 0: browser close, None: default.

        An int becomes the session's own idle timeout; a date is kept in the
        data as Django does, and the session is not loaded after it.
        """
        session = self.raw
        session.pop(EXPIRY_KEY, None)
        if value is None:
            session.permanent = self.middleware.permanent_by_default
            session.idle_timeout = None
            return
        now = self.middleware.lifetime.clock()
        if isinstance(value, timedelta):
            value = datetime.fromtimestamp(now, timezone.utc) + value
        if isinstance(value, datetime):
            session[EXPIRY_KEY] = value.isoformat()
            value = max(1, math.ceil(value.timestamp() - now))
        if not isinstance(value, int) or value < 0:
            raise ValueError(
                f"set_expiry() takes seconds >= 0, a datetime, a timedelta or None, not {value!r}"
            )
        session.permanent = value > 0
        session.idle_timeout = value or None

    def get_expiry_age(self) -> int:
        """Seconds until the session expires if it is not used again."""
        session = self.raw
        lifetime = self.middleware.lifetime
        now = lifetime.clock()
        left = lifetime.left(session, now)
        deadline = _deadline(session.get(EXPIRY_KEY))
        if deadline is not None:
            left = min(left, deadline - now)
        return math.floor(left)

    def get_expiry_date(self) -> datetime:
        """When the session expires if it is not used again (aware when ``USE_TZ``)."""
        moment = self.middleware.lifetime.clock() + self.get_expiry_age()
        if settings.USE_TZ:
            return datetime.fromtimestamp(moment, timezone.utc)
        return datetime.fromtimestamp(moment)

    def get_expire_at_browser_close(self) -> bool:
        """True when the cookie has no Max-Age, so the browser drops it on close."""
        return not self.raw.permanent

    def get_session_cookie_age(self) -> int:
        """The idle timeout every session has unless ``set_expiry`` gave it its own."""
        return self.middleware.lifetime.idle_timeout

    # -- test cookie -----------------------------------------------------

    def set_test_cookie(self) -> None:
        self[self.TEST_COOKIE_NAME] = self.TEST_COOKIE_VALUE

    def test_cookie_worked(self) -> bool:
        return bool(self.get(self.TEST_COOKIE_NAME) == self.TEST_COOKIE_VALUE)

    def delete_test_cookie(self) -> None:
        del self[self.TEST_COOKIE_NAME]

    def __repr__(self) -> str:
        return f"<DjangoSession {self.raw!r}>"


# Django's async API (alogin, alogout and aget_user call some of it). The WSGI
# middleware is synchronous; under WSGI these run in the request's own thread,
# so calling the synchronous methods blocks nothing else.
_ASYNC_VARIANTS = {
    "aset": "__setitem__",
    **{
        "a" + name: name
        for name in (
            "get",
            "pop",
            "setdefault",
            "update",
            "has_key",
            "keys",
            "values",
            "items",
            "save",
            "cycle_key",
            "flush",
            "set_expiry",
            "get_expiry_age",
            "get_expiry_date",
            "get_expire_at_browser_close",
            "set_test_cookie",
            "test_cookie_worked",
            "delete_test_cookie",
        )
    },
}


def _async_variant(name: str) -> Callable[..., Awaitable[Any]]:
    async def variant(self: DjangoSession, *args: Any) -> Any:
        return getattr(self, name)(*args)

    return variant


for _async_name, _sync_name in _ASYNC_VARIANTS.items():
    setattr(DjangoSession, _async_name, _async_variant(_sync_name))
