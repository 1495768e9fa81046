"""Flask adapter: ``flask.session`` kept by the middleware, configured by ``app.config``.

``Session(app, store=...)`` wraps ``app.wsgi_app`` in a :class:`FlaskSessionMiddleware`
and installs a :class:`SessionInterface`, so ``flask.session``, ``flash()``, the
test client and extensions that keep state in the session work unchanged. The
middleware persists the session when the response starts, after Flask has run
its ``after_request`` handlers, so ``save_session`` has nothing left to do.

Flask's settings are read on every request, as Flask itself does; what is
derived from them (cookie policy, keys, lifetime) is cached per distinct set
of values.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from flask import Flask, has_request_context
from flask.globals import request_ctx
from flask.sessions import SessionInterface as FlaskSessionInterface
from flask.sessions import SessionMixin

from wsgi_session.backends import Backend, BackendFactory, CookieUpdate, default_store, make_backend
from wsgi_session.backends.adoption import DEFAULT_GRACE
from wsgi_session.backends.owners import Sessions, sessions_of
from wsgi_session.config import store_from_url
from wsgi_session.cookies import CookiePolicy, KeyRing
from wsgi_session.errors import ConfigurationError, StoreUnavailable
from wsgi_session.lifetime import Lifetime
from wsgi_session.metrics import Metrics
from wsgi_session.middleware import UNAVAILABLE_BODY, BaseSessionMiddleware, adoption_for
from wsgi_session.migrate.base import Source, SourceFactory
from wsgi_session.session import Origin
from wsgi_session.session import Session as RequestSession
from wsgi_session.stores.base import Store
from wsgi_session.view import SessionView
from wsgi_session.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

if TYPE_CHECKING:
    from flask import Request, Response

__all__ = ["FlaskSession", "FlaskSessionMiddleware", "Session", "SessionInterface"]

UNAVAILABLE = (
    "The session is unavailable because no secret key was set.  Set the secret_key on "
    "the application to something unique and secret."
)
OWNER_KEY = "_user_id"  # where Flask-Login keeps the logged-in user's id
MAX_CACHED = 16  # distinct configurations kept; more only happens in test suites


class Setting(NamedTuple):
    """One ``app.config`` setting the cookie policy and backend derive from."""

    default: Any  # its value where app.config lacks it (an older Flask, or ours)
    option: str  # the middleware option it sets, as configuration errors name it


# Every setting the adapter reads, named here and only here: the derived policy
# and backend are cached under these settings' values (read in one call), and
# _derive sees only them, so a setting missing here fails every request at once
# instead of being ignored after a change.
SETTINGS: dict[str, Setting] = {
    "SECRET_KEY": Setting(None, "secret_key"),
    "SECRET_KEY_FALLBACKS": Setting(None, "fallback_keys"),  # Flask 3.1
    "SESSION_COOKIE_NAME": Setting("session", "cookie_name"),
    "SESSION_COOKIE_DOMAIN": Setting(None, "cookie_domain"),
    "SESSION_COOKIE_PATH": Setting(None, "cookie_path"),
    "APPLICATION_ROOT": Setting("/", "cookie_path"),  # the path when SESSION_COOKIE_PATH is unset
    "SESSION_COOKIE_HTTPONLY": Setting(True, "cookie_httponly"),
    "SESSION_COOKIE_SECURE": Setting(False, "cookie_secure"),
    "SESSION_COOKIE_SAMESITE": Setting(None, "cookie_samesite"),
    "SESSION_COOKIE_PARTITIONED": Setting(False, "cookie_partitioned"),  # Flask 3.1
    "PERMANENT_SESSION_LIFETIME": Setting(timedelta(days=31), "idle_timeout"),
    "SESSION_REFRESH_EACH_REQUEST": Setting(True, "refresh_each_request"),
    "SESSION_SEAL_RECORDS": Setting(False, "seal_records"),  # ours
    "SESSION_REQUIRE_SEALED": Setting(False, "require_sealed"),  # ours
    "SESSION_MIGRATE_FROM": Setting(None, "migrate_from"),  # ours: docs/migrating.md
    "SESSION_MIGRATE_GRACE": Setting(DEFAULT_GRACE, "migrate_grace"),  # ours
    "SESSION_MIGRATE_KEEP_OLD": Setting(False, "migrate_keep_old"),  # ours
}
# Ours too, read once by init_app (not per request): the middleware's metrics adapter.
REPORTING_NAMES = {"metrics": "SESSION_METRICS", "audit": "SESSION_AUDIT"}


# The middleware's option names, as configuration errors carry them, and the
# Flask settings they come from: "SESSION_COOKIE_PATH (or APPLICATION_ROOT)".
def _flask_names() -> dict[str, str]:
    by_option: dict[str, list[str]] = {}
    for name, setting in SETTINGS.items():
        by_option.setdefault(setting.option, []).append(name)
    return {
        option: first + "".join(f" (or {other})" for other in others)
        for option, (first, *others) in by_option.items()
    }


FLASK_NAMES = {**_flask_names(), **REPORTING_NAMES}
_read_settings = itemgetter(*SETTINGS)


class FlaskSession(SessionView, SessionMixin):
    """``flask.session``: the request's :class:`wsgi_session.Session` as Flask expects it.

    Besides the mapping and Flask's ``permanent``, ``new``, ``modified`` and
    ``accessed``, it offers ``id``, ``idle_timeout``, ``regenerate()`` (call it
    on login) and ``destroy()`` (call it on logout). ``raw`` is the
    :class:`wsgi_session.Session` itself, the one in the WSGI environ.
    """

    detached: Detached | None = None  # set on a session opened outside the middleware
    response: Response | None = None  # the request's response, once Flask has made it

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return repr(self.raw).replace("<Session", "<FlaskSession", 1)

    @property
    def permanent(self) -> bool:
        """A permanent session's cookie carries Expires/Max-Age (``PERMANENT_SESSION_LIFETIME``)."""
        return self.raw.permanent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self.raw.permanent = value

    @property
    def new(self) -> bool:  # type: ignore[override]  # Flask only reads it
        """True when no stored session backs this one (yet)."""
        return self.raw.new

    @property
    def id(self) -> str:
        return self.raw.id

    @property
    def idle_timeout(self) -> int | None:
        """This session's own idle timeout in seconds; ``None``: ``PERMANENT_SESSION_LIFETIME``."""
        return self.raw.idle_timeout

    @idle_timeout.setter
    def idle_timeout(self, seconds: int | None) -> None:
        self.raw.idle_timeout = seconds

    def regenerate(self) -> None:
        """Give the session a new id, keeping its data (call it on login)."""
        self.raw.regenerate()

    def destroy(self) -> None:
        """Delete the stored session and expire the cookie (call it on logout)."""
        self.raw.destroy()


@dataclass(frozen=True)
class Detached:
    """A session opened outside the middleware, and what committing it needs."""

    environ: WSGIEnvironment
    policy: CookiePolicy
    backend: Backend


class _NoSecret:
    """The backend while ``SECRET_KEY`` is unset: reads find nothing, writes fail.

    ``flask.session`` is Flask's ``NullSession`` then; this only answers code
    that uses the environ's session directly.
    """

    def open(self, cookie: str | None) -> Origin:
        return Origin.fresh(time.time())

    def may_be_permanent(self, cookie: str) -> bool:
        return False  # nothing is ever loaded

    def commit(self, session: RequestSession) -> CookieUpdate | None:
        if session.modified:
            raise RuntimeError(UNAVAILABLE)
        return None


class FlaskSessionMiddleware(BaseSessionMiddleware):
    """The session middleware with cookie, key and lifetime settings from ``app.config``.

    Read on every request: the settings of :data:`SETTINGS`, Flask's
    (``SECRET_KEY``, ``SESSION_COOKIE_*``, ``PERMANENT_SESSION_LIFETIME``, ...)
    and ours (``SESSION_SEAL_RECORDS``, ``SESSION_REQUIRE_SEALED``).
    """

    def __init__(
        self,
        app: WSGIApplication,
        flask_app: Flask,
        store: Store | BackendFactory,
        *,
        absolute_timeout: int | None = None,
        refresh_interval: int | None = None,
        on_store_error: Literal["fail", "degrade"] = "fail",
        environ_key: str = "wsgi_session",
        owner_key: str | None = OWNER_KEY,
        record_client: bool = False,
        metrics: Metrics | str | None = None,
        audit: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # The template of every request's lifetime: checks the options now; the
        # idle timeout comes from app.config per request.
        lifetime = Lifetime(
            absolute_timeout=absolute_timeout, refresh_interval=refresh_interval, clock=clock
        )
        super().__init__(
            app,
            lifetime=lifetime,
            on_store_error=on_store_error,
            environ_key=environ_key,
            record_client=record_client,
            metrics=metrics,
            audit=audit,
        )
        self.flask_app = flask_app
        self.store = store
        self.owner_key = owner_key
        self._derived: dict[tuple[Any, ...], tuple[CookiePolicy, Backend]] = {}
        # Flask's app.secret_key is app.config["SECRET_KEY"] unless the app's class
        # sets its own (a class attribute, a property): then only app.secret_key
        # has it, and it is read as Flask's session interface reads it.
        self.secret_in_config = _secret_in_config(flask_app)
        if not self.secret_in_config:
            self._read_settings = self._read_settings_with_secret_attribute

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        found = environ.get(self.environ_key)
        if found is not None and isinstance(found, RequestSession):
            # A session middleware around several apps mounted in one process (a
            # Django project's, say) opened the session: Flask shares it.
            return self.app(environ, start_response)
        return BaseSessionMiddleware.__call__(self, environ, start_response)  # no super() object

    def cookie_policy(self, environ: WSGIEnvironment) -> CookiePolicy:
        return self.settings()[0]

    def backend_for(self, environ: WSGIEnvironment) -> Backend:
        return self.settings()[1]

    @property
    def sessions(self) -> Sessions:
        """List and revoke a user's sessions (docs/sessions-per-user.md), for the current config."""
        return sessions_of(self.settings()[1])

    @staticmethod
    def response_complete(session: RequestSession) -> bool:
        """Whether ``session``'s response runs no code of the application's any more.

        Asked at a change after the response started: true unless the body is
        streamed (a ``stream_with_context`` generator may still be running,
        whose change would be lost). The change then goes ahead, as Flask's own
        session takes it after its request (``teardown_request``, the context
        the test client keeps): in this request's copy only.
        """
        if not has_request_context():
            return False
        view = request_ctx.session
        if type(view) is not FlaskSession or view.raw is not session or view.response is None:
            return False
        return not view.response.is_streamed

    def refreshes_each_request(self, environ: WSGIEnvironment) -> bool:
        return bool(self.flask_app.config["SESSION_REFRESH_EACH_REQUEST"])

    # The settings' values as a tuple, in SETTINGS' order, read in one call.
    _read_settings: Callable[[Mapping[str, Any]], tuple[Any, ...]] = _read_settings

    def _read_settings_with_secret_attribute(self, config: Mapping[str, Any]) -> tuple[Any, ...]:
        return (self.flask_app.secret_key, *_read_settings(config)[1:])

    def secret_key(self) -> Any:
        """The application's secret key, wherever Flask's ``app.secret_key`` finds it."""
        if self.secret_in_config:
            return self.flask_app.config.get("SECRET_KEY")
        return self.flask_app.secret_key

    def settings(self) -> tuple[CookiePolicy, Backend]:
        """The cookie policy and backend for the application's current config."""
        config = self.flask_app.config
        try:
            # The settings as they are, read in one call: the usual case.
            return self._derived[self._read_settings(config)]
        except (KeyError, TypeError):
            # Not derived yet, a setting deleted from app.config, or unhashable
            # fallback keys (a list).
            pass
        values = {
            name: _hashable(config.get(name, setting.default)) for name, setting in SETTINGS.items()
        }
        values["SECRET_KEY"] = self.secret_key()
        key = tuple(values.values())
        found = self._derived.get(key)
        if found is None:
            found = self._derive(values)
            if len(self._derived) >= MAX_CACHED:
                self._derived.clear()
            self._derived[key] = found
            with contextlib.suppress(KeyError, TypeError):
                self._derived[self._read_settings(config)] = found
        return found

    def settings_for(self, environ: WSGIEnvironment) -> tuple[CookiePolicy, Backend]:
        # The application's settings, the same for every request; asked through
        # settings() so that a subclass overriding it is asked here too.
        return self.settings()

    def _derive(self, settings: Mapping[str, Any]) -> tuple[CookiePolicy, Backend]:
        """The policy and backend of ``settings`` (exactly those of ``SETTINGS``)."""
        partitioned = bool(settings["SESSION_COOKIE_PARTITIONED"])
        try:
            policy = CookiePolicy(
                name=settings["SESSION_COOKIE_NAME"],
                domain=settings["SESSION_COOKIE_DOMAIN"] or None,
                path=settings["SESSION_COOKIE_PATH"] or settings["APPLICATION_ROOT"],
                # As werkzeug: Partitioned implies Secure.
                secure=bool(settings["SESSION_COOKIE_SECURE"]) or partitioned,
                httponly=bool(settings["SESSION_COOKIE_HTTPONLY"]),
                samesite=settings["SESSION_COOKIE_SAMESITE"],
                partitioned=partitioned,
            )
            secret = settings["SECRET_KEY"]
            if not secret:
                return policy, _NoSecret()
            lifetime = settings["PERMANENT_SESSION_LIFETIME"]
            seconds = lifetime.total_seconds() if isinstance(lifetime, timedelta) else lifetime
            derived = replace(
                self.lifetime,
                idle_timeout=int(seconds),
                refresh_each_request=bool(settings["SESSION_REFRESH_EACH_REQUEST"]),
            )
            keys = KeyRing(secret, settings["SECRET_KEY_FALLBACKS"] or ())
            adoption = adoption_for(
                settings["SESSION_MIGRATE_FROM"],
                keys,
                policy,
                derived,
                settings["SESSION_MIGRATE_GRACE"],
                bool(settings["SESSION_MIGRATE_KEEP_OLD"]),
            )
            if adoption is not None:
                policy = adoption.reading_old_cookie(policy)
            backend = make_backend(
                self.store,
                keys,
                derived,
                owner_key=self.owner_key,
                seal_records=bool(settings["SESSION_SEAL_RECORDS"]),
                require_sealed=bool(settings["SESSION_REQUIRE_SEALED"]),
                metrics=self.metrics,
                audit=self.audit,
                adoption=adoption,
            )
        except ConfigurationError as error:
            raise ConfigurationError(
                "app.config: {problem}", *error.settings, problem=error.naming(FLASK_NAMES)
            ) from error
        return policy, backend

    def detached_session(self, environ: WSGIEnvironment) -> FlaskSession:
        """A session for a request the middleware does not wrap (``test_request_context``)."""
        policy, backend = self.settings()
        session = FlaskSession(RequestSession(lambda: backend.open(policy.read(environ))))
        session.detached = Detached(environ, policy, backend)
        return session


class SessionInterface(FlaskSessionInterface):
    """Flask's view of the middleware's sessions; saving is the middleware's job."""

    def __init__(self, middleware: FlaskSessionMiddleware) -> None:
        self.middleware = middleware

    def open_session(self, app: Flask, request: Request) -> FlaskSession | None:
        # app.secret_key, without its descriptor call where it is the config's.
        secret = app.config["SECRET_KEY"] if self.middleware.secret_in_config else app.secret_key
        if not secret:
            return None  # Flask's NullSession: readable, and raises on a write
        found = request.environ.get(self.middleware.environ_key)
        # The exact type first: isinstance against an ABC is a Python call per request.
        if type(found) is RequestSession or isinstance(found, RequestSession):
            return FlaskSession(found)
        # No middleware around this request: the test client's
        # session_transaction(), or a test_request_context().
        return self.middleware.detached_session(request.environ)

    def is_null_session(self, obj: object) -> bool:
        # Asked by Flask on every request. Its answer is an isinstance against an
        # ABC (NullSession is a MutableMapping): a Python call, ~2k instructions.
        return type(obj) is not FlaskSession and super().is_null_session(obj)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        # Not isinstance(session, FlaskSession): an ABC's check is a Python call per request.
        if type(session) is not FlaskSession:
            return
        detached = session.detached
        if detached is None:
            # The middleware commits when the response starts; a change after it
            # asks whether the body is streamed (see response_complete).
            session.response = response
            session.raw.complete_after_seal(self.middleware.response_complete)
            return
        if not session.accessed:
            return
        headers = self.middleware.session_headers(
            session.raw, detached.backend, detached.policy, detached.environ
        )
        session.raw.seal()
        for name, value in headers:
            if name == "Vary":
                response.vary.add(value)
            else:
                response.headers.add(name, value)


class Session:
    """The Flask extension: ``Session(app, store=...)`` or ``Session(store=...).init_app(app)``.

    ``store`` defaults to the store URL in ``SESSION_STORE`` (``postgresql://...``,
    ``redis://...``), else the embedded SQLite file; the other options are the
    middleware's (``absolute_timeout``, ``refresh_interval``, ``on_store_error``,
    ``environ_key``, ``owner_key``, ``record_client``, ``clock``), and ``metrics``
    and ``audit``, which default to ``SESSION_METRICS`` and ``SESSION_AUDIT``, read
    by ``init_app``. Everything else comes from ``app.config``; ``migrate_from`` is
    ``SESSION_MIGRATE_FROM``'s default (the sessions to adopt: docs/migrating.md).
    The owner of a session follows Flask-Login's ``_user_id`` unless ``owner_key``
    names another key (``None``: no owners); ``app.extensions["wsgi_session"].sessions``
    lists and revokes a user's sessions.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        store: Store | BackendFactory | None = None,
        absolute_timeout: int | None = None,
        refresh_interval: int | None = None,
        on_store_error: Literal["fail", "degrade"] = "fail",
        environ_key: str = "wsgi_session",
        owner_key: str | None = OWNER_KEY,
        record_client: bool = False,
        metrics: Metrics | str | None = None,
        audit: bool | None = None,
        migrate_from: str | Source | SourceFactory | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store  # None: app.config's SESSION_STORE, else the embedded default
        self.metrics = metrics  # None: app.config's SESSION_METRICS, and so for audit
        self.audit = audit
        self.migrate_from = migrate_from
        self.options: Mapping[str, Any] = {
            "absolute_timeout": absolute_timeout,
            "refresh_interval": refresh_interval,
            "on_store_error": on_store_error,
            "environ_key": environ_key,
            "owner_key": owner_key,
            "record_client": record_client,
            "clock": clock,
        }
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Wrap ``app.wsgi_app`` and install the session interface."""
        if self.migrate_from is not None:
            app.config.setdefault("SESSION_MIGRATE_FROM", self.migrate_from)
        # Every setting in app.config (ours, and Flask's newer ones on an older
        # Flask), as extensions do, so that the one-call read finds them all.
        for name, setting in SETTINGS.items():
            app.config.setdefault(name, setting.default)
        # Read once, here: the middleware counts with one adapter for its whole life.
        reporting = {
            "metrics": app.config.get("SESSION_METRICS") if self.metrics is None else self.metrics,
            "audit": bool(app.config.get("SESSION_AUDIT") if self.audit is None else self.audit),
        }
        try:
            middleware = FlaskSessionMiddleware(
                app.wsgi_app, app, self.store_for(app), **{**reporting, **self.options}
            )
        except ConfigurationError as error:
            raise ConfigurationError(
                "app.config: {problem}", *error.settings, problem=error.naming(FLASK_NAMES)
            ) from error
        middleware.settings()  # a configuration that is already wrong fails now
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.session_interface = SessionInterface(middleware)
        app.extensions["wsgi_session"] = middleware
        # A session store outage answers 503 (and is logged once by the middleware),
        # not a 500 with a traceback per request; a handler of the app's own wins.
        if StoreUnavailable not in app.error_handler_spec[None][None]:
            app.register_error_handler(StoreUnavailable, _store_unavailable)

    def store_for(self, app: Flask) -> Store | BackendFactory:
        """``store=``, else the store URL in ``SESSION_STORE``, else the embedded default."""
        if self.store is not None:
            return self.store
        url = app.config.get("SESSION_STORE")
        if not url:
            return default_store()
        try:
            return store_from_url(url)
        except ConfigurationError as error:
            raise ConfigurationError(
                "SESSION_STORE: {problem}", "store", problem=str(error)
            ) from error


def _store_unavailable(error: StoreUnavailable) -> tuple[bytes, int, dict[str, str]]:
    return UNAVAILABLE_BODY, 503, {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "1"}


def _secret_in_config(app: Flask) -> bool:
    """Whether ``app.secret_key`` is Flask's own, which reads ``app.config["SECRET_KEY"]``."""
    return inspect.getattr_static(type(app), "secret_key", None) is inspect.getattr_static(
        Flask, "secret_key"
    )


def _hashable(value: Any) -> Any:
    """A setting's value as a cache key holds it: fallback keys (any iterable) as a tuple."""
    if value is None or isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return value
    return tuple(value)
