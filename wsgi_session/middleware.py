"""The WSGI middleware: a lazy session on the way in, persisted on the way out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter
from typing import Literal

from wsgi_session.backends import Backend, BackendFactory, CookieUpdate, make_backend
from wsgi_session.backends.adoption import DEFAULT_GRACE, Adoption
from wsgi_session.backends.owners import Sessions, sessions_of
from wsgi_session.cookies import CookiePolicy, KeyRing
from wsgi_session.errors import ConfigurationError, StoreUnavailable, StoreWriteFailed
from wsgi_session.lifetime import DAY, Lifetime
from wsgi_session.metrics import AuditLog, Metrics, metrics_from
from wsgi_session.migrate.base import Host, OldCookie, Source, SourceFactory
from wsgi_session.outage import OutageLog, RefusedWritesLog
from wsgi_session.session import Origin, Session
from wsgi_session.stores.base import Store
from wsgi_session.wsgi import (
    ExcInfo,
    Headers,
    StartResponse,
    Write,
    WSGIApplication,
    WSGIEnvironment,
)

log = logging.getLogger("wsgi_session")

ON_STORE_ERROR = ("fail", "degrade")
UNAVAILABLE_BODY = b"Service Unavailable: the session store did not answer. Please retry.\n"


class BaseSessionMiddleware:
    """The request flow, for any cookie policy and backend.

    Nothing is parsed or loaded until the application touches the session. When
    the application calls ``start_response`` the session is persisted (only if
    it changed) and ``Set-Cookie`` and ``Vary: Cookie`` are added. A write the
    store did not acknowledge turns the response into a 503, and so does a
    load that failed, unless the application handled it. Subclasses say
    which cookie policy and backend a request uses: fixed for
    :class:`SessionMiddleware`, read from the framework's settings per request
    for the Flask adapter.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        lifetime: Lifetime,
        on_store_error: Literal["fail", "degrade"] = "fail",
        environ_key: str = "wsgi_session",
        record_client: bool = False,
        metrics: Metrics | str | None = None,
        audit: bool = False,
    ) -> None:
        if on_store_error not in ON_STORE_ERROR:
            raise ConfigurationError(
                "{on_store_error} must be one of {allowed}, not {value!r}",
                "on_store_error",
                allowed=ON_STORE_ERROR,
                value=on_store_error,
            )
        self.app = app
        self.lifetime = lifetime
        self.on_store_error = on_store_error
        self.environ_key = environ_key
        self.record_client = bool(record_client)
        self.outage = OutageLog(log)
        self.refusals = RefusedWritesLog(log)  # writes the store answered but refused
        self.metrics = metrics_from(metrics)
        self.audit = AuditLog() if audit else None
        # With metrics off, every request gets the plain response: nothing is counted.
        self._response_type = _MeteredResponse if self.metrics.enabled else _Response

    # Both hooks' answers when they never change (SessionMiddleware's, unless a
    # subclass overrides a hook): every request that uses its session reads them
    # here, without the calls of settings_for.
    _fixed_settings: tuple[CookiePolicy, Backend] | None = None

    def cookie_policy(self, environ: WSGIEnvironment) -> CookiePolicy:
        """The cookie attributes for this request."""
        raise NotImplementedError

    def backend_for(self, environ: WSGIEnvironment) -> Backend:
        """The backend for this request."""
        raise NotImplementedError

    def settings_for(self, environ: WSGIEnvironment) -> tuple[CookiePolicy, Backend]:
        """Both hooks' answers at once; a subclass that derives them together overrides this."""
        return self.cookie_policy(environ), self.backend_for(environ)

    def refreshes_each_request(self, environ: WSGIEnvironment) -> bool:
        """Whether a permanent session's cookie is re-sent even by a request that never used it."""
        return self.lifetime.refresh_each_request

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = self._response_type(self, environ, start_response)
        environ[self.environ_key] = response.session
        try:
            app_iter = self.app(environ, response.start_response)
        except StoreUnavailable:
            if response.started or self.on_store_error != "fail":
                raise
            return response.unavailable()
        if response.failed:
            _close(app_iter)
            return [UNAVAILABLE_BODY]
        if response.started:
            return app_iter  # untouched, so wsgi.file_wrapper objects keep their fast path
        return _LateStart(response, app_iter)

    def session_headers(
        self, session: Session, backend: Backend, policy: CookiePolicy, environ: WSGIEnvironment
    ) -> Headers:
        """Commit an accessed ``session``; the ``Vary`` and ``Set-Cookie`` headers to send.

        Raises if the store did not acknowledge the write. A degraded session's
        changes are dropped (the decision says so): the outage log counted its
        request when it loaded.
        """
        update = backend.commit(session)
        if update is None:
            return [VARY_COOKIE]
        return _with_cookie(update, policy, environ)


class SessionMiddleware(BaseSessionMiddleware):
    """Give every request a lazy ``Session`` in ``environ[environ_key]``.

    ``store`` defaults to the embedded SQLite file; docs/middleware.md describes
    every option. The cookie attributes and timeouts are checked here, at start-up.
    With ``owner_key``, :attr:`sessions` lists and revokes a user's sessions
    (docs/sessions-per-user.md).
    """

    def __init__(
        self,
        app: WSGIApplication,
        secret_key: str | bytes,
        *,
        store: Store | BackendFactory | None = None,
        fallback_keys: Sequence[str | bytes] | None = (),
        cookie_name: str = "session",
        cookie_domain: str | None = None,
        cookie_path: str | None = None,
        cookie_secure: bool | None = None,
        cookie_httponly: bool = True,
        cookie_samesite: str | None = "Lax",
        cookie_partitioned: bool = False,
        idle_timeout: int = 14 * DAY,
        absolute_timeout: int | None = None,
        refresh_interval: int | None = None,
        refresh_each_request: bool = False,
        on_store_error: Literal["fail", "degrade"] = "fail",
        environ_key: str = "wsgi_session",
        seal_records: bool = False,
        require_sealed: bool = False,
        owner_key: str | None = None,
        record_client: bool = False,
        metrics: Metrics | str | None = None,
        audit: bool = False,
        migrate_from: str | Source | SourceFactory | None = None,
        migrate_grace: int = DEFAULT_GRACE,
        migrate_keep_old: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if owner_key is not None and (not isinstance(owner_key, str) or not owner_key):
            raise ConfigurationError(
                "{owner_key} must be a key of the session data (a non-empty string), not {value!r}",
                "owner_key",
                value=owner_key,
            )
        lifetime = Lifetime(
            idle_timeout=idle_timeout,
            absolute_timeout=absolute_timeout,
            refresh_interval=refresh_interval,
            refresh_each_request=refresh_each_request,
            clock=clock,
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
        self.owner_key = owner_key
        self.policy = CookiePolicy(
            name=cookie_name,
            domain=cookie_domain,
            path=cookie_path,
            secure=cookie_secure,
            httponly=cookie_httponly,
            samesite=cookie_samesite,
            partitioned=cookie_partitioned,
        )
        self.seal_records = bool(seal_records)
        self.require_sealed = bool(require_sealed)
        keys = KeyRing(secret_key, fallback_keys)
        adoption = adoption_for(
            migrate_from, keys, self.policy, lifetime, migrate_grace, migrate_keep_old
        )
        if adoption is not None:
            self.policy = adoption.reading_old_cookie(self.policy)
        self.backend = make_backend(
            store,
            keys,
            lifetime,
            owner_key=owner_key,
            seal_records=self.seal_records,
            require_sealed=self.require_sealed,
            metrics=self.metrics,
            audit=self.audit,
            adoption=adoption,
        )
        self.sessions: Sessions = sessions_of(self.backend)
        # Both hooks' answers, fixed at start-up, unless a subclass overrides a
        # hook (the Django adapter does): then they are asked per request.
        cls = type(self)
        fixed = (
            cls.cookie_policy is SessionMiddleware.cookie_policy
            and cls.backend_for is SessionMiddleware.backend_for
            and cls.settings_for is BaseSessionMiddleware.settings_for
        )
        if fixed:
            self._fixed_settings = (self.policy, self.backend)

    def cookie_policy(self, environ: WSGIEnvironment) -> CookiePolicy:
        return self.policy

    def backend_for(self, environ: WSGIEnvironment) -> Backend:
        return self.backend


def adoption_for(
    migrate_from: str | Source | SourceFactory | None,
    keys: KeyRing,
    policy: CookiePolicy,
    lifetime: Lifetime,
    grace: int = DEFAULT_GRACE,
    keep_old: bool = False,
) -> Adoption | None:
    """The adoption of ``migrate_from``'s sessions (docs/migrating.md); ``None``: no source."""
    if migrate_from is None or migrate_from == "":
        return None
    if isinstance(migrate_from, str):
        # A URL is parsed by the configuration layer, imported only by a deployment that migrates.
        from wsgi_session.config.migration_urls import source_from_url

        migrate_from = source_from_url(migrate_from)
    source = migrate_from
    if not isinstance(source, Source) and callable(source):
        host = Host(
            keys.secret_key,
            tuple(keys.fallback_keys),
            OldCookie(policy.name, policy.path, policy.domain),
            lifetime.idle_timeout,
            lifetime.clock,
        )
        source = source(host)
    return Adoption(source, keys, grace=grace, keep_old=keep_old)


VARY_COOKIE = ("Vary", "Cookie")
_NO_HEADERS: Headers = []  # shared, never mutated: extra_headers is replaced, not appended to


def _with_cookie(update: CookieUpdate, policy: CookiePolicy, environ: WSGIEnvironment) -> Headers:
    """``Vary: Cookie`` and the ``Set-Cookie`` that carries out ``update``."""
    if update.value is None:
        cookie = policy.expire(environ)
    else:
        cookie = policy.dump(environ, update.value, update.max_age)
        if update.check is not None:
            update.check(cookie)
        if update.replaces is not None:
            old = policy.expire_other(environ, *update.replaces)
            if old is not None:
                return [VARY_COOKIE, ("Set-Cookie", cookie), ("Set-Cookie", old)]
    return [VARY_COOKIE, ("Set-Cookie", cookie)]


class _Response:
    """One response's start_response wrapper: where the session is committed."""

    __slots__ = (
        "backend",
        "environ",
        "extra_headers",
        "failed",
        "load_failed",
        "middleware",
        "origin",
        "policy",
        "real_start_response",
        "session",
        "started",
    )

    def __init__(
        self,
        middleware: BaseSessionMiddleware,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> None:
        self.middleware = middleware
        self.environ = environ
        self.real_start_response = start_response
        self.session = Session(self.open_session)
        self.origin: Origin | None = None  # what open_session loaded: the session was used
        self.started = False
        self.failed = False
        self.load_failed = False
        self.extra_headers = _NO_HEADERS

    def open_session(self) -> Origin:
        """Load the request's session (on its first use)."""
        # The hooks are asked only now: a request that never uses its session
        # (most static pages) pays for neither.
        middleware = self.middleware
        environ = self.environ
        self.policy, self.backend = policy, backend = (
            middleware._fixed_settings or middleware.settings_for(environ)
        )
        try:
            origin = backend.open(policy.read(environ))
        except StoreUnavailable as exc:
            if middleware.on_store_error == "fail":
                self.load_failed = True
                middleware.metrics.store_failure("load", "503")
                middleware.outage.failure("session store unavailable; answering 503", exc)
                raise
            middleware.metrics.store_failure("load", "degraded")
            middleware.outage.failure(
                "session store unavailable; serving empty sessions, their changes dropped", exc
            )
            origin = Origin.fresh(middleware.lifetime.clock(), degraded=True)
        else:
            if middleware.outage.down and (not origin.new or origin.stale_cookie):
                # The store answered (with a record or without one). A request with
                # no cookie never asked it, so it proves nothing about an outage.
                middleware.outage.success()
            if middleware.record_client:
                # Kept raw: encoded only if this request logs in (see backends/owners.py).
                origin.client = (
                    environ.get("HTTP_USER_AGENT", ""),
                    environ.get("REMOTE_ADDR", ""),
                )
        self.origin = origin
        return origin

    def start_response(
        self, status: str, headers: Headers, exc_info: ExcInfo | None = None
    ) -> Write:
        if not self.started:
            self.started = True
            middleware = self.middleware
            if self.origin is None:
                refreshed = middleware.refreshes_each_request(self.environ) and self._refreshed()
                if not refreshed:
                    # Sealed even if untouched: a first change made now could not be saved either.
                    self.session.seal()
                    if self.load_failed and status[:3] == "500":
                        # A framework turned the failed load into its generic error page.
                        return self._fail()
                    return self.real_start_response(status, headers, exc_info)
                session = refreshed
            else:
                session = self.session
            try:
                # A re-sent cookie comes with Vary: Cookie even if the application never
                # used its session, as with Flask's own (CVE-2023-30861: a shared cache
                # must not hand one user's Set-Cookie to another).
                self.extra_headers = middleware.session_headers(
                    session, self.backend, self.policy, self.environ
                )
                outage, refusals = middleware.outage, middleware.refusals
                if (
                    (outage.down or refusals.down)
                    and not session.origin.degraded
                    and session.modified
                ):
                    # A write was acknowledged (checked only in an outage).
                    outage.success()
                    refusals.success()
            except (StoreUnavailable, StoreWriteFailed) as exc:
                fail = self.middleware.on_store_error == "fail"
                self.middleware.metrics.store_failure("write", "503" if fail else "degraded")
                message = (
                    "session not saved; answering 503"
                    if fail
                    else "session not saved; the response goes on without it"
                )
                if isinstance(exc, StoreUnavailable):
                    self.middleware.outage.failure(message, exc)
                else:
                    self.middleware.refusals.failure(message, exc)
                if fail:
                    return self._fail()
                self.extra_headers = [VARY_COOKIE]
            finally:
                self.session.seal()
        elif self.failed:
            return _discard
        return self.real_start_response(
            status, _with_session_headers(headers, self.extra_headers), exc_info
        )

    def _refreshed(self) -> Session | None:
        """The untouched session, if its permanent cookie is re-sent on every request.

        As Flask's ``SESSION_REFRESH_EACH_REQUEST``: an active user is not logged
        out just because the pages they use never read the session. Asked only
        when the option is on, and loads it only if a cookie came that may be a
        permanent session's (a browser-session cookie says it is not): otherwise
        an untouched request stays free. Loaded as a session of its own, to commit:
        the application's stays untouched (``accessed`` is what the application did).
        """
        middleware = self.middleware
        policy, backend = middleware._fixed_settings or middleware.settings_for(self.environ)
        cookie = policy.read(self.environ)
        if cookie is None or not backend.may_be_permanent(cookie):
            return None  # nothing to refresh, known without the store
        session = Session(self.open_session)
        failed_before = self.load_failed  # the application's own use of the session failed
        try:
            permanent = session.permanent  # loads it
        except StoreUnavailable:
            # Logged by the outage log; a page that did not need its session is still
            # served, but one whose session failed to load stays a 503.
            self.load_failed = failed_before
            return None
        return session if permanent else None

    def _fail(self) -> Write:
        self.failed = True
        self.real_start_response(
            "503 Service Unavailable",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(UNAVAILABLE_BODY))),
                ("Retry-After", "1"),
            ],
        )
        return _discard

    def unavailable(self) -> Iterable[bytes]:
        """The 503 for a request whose application let ``StoreUnavailable`` escape."""
        self.started = True
        self._fail()
        return [UNAVAILABLE_BODY]


class _MeteredResponse(_Response):
    """A response that counts the requests that never used their session (metrics on)."""

    __slots__ = ()

    def start_response(
        self, status: str, headers: Headers, exc_info: ExcInfo | None = None
    ) -> Write:
        first = not self.started
        write = _Response.start_response(self, status, headers, exc_info)
        # Nothing committed (the backend counts what it commits) and no 503.
        if first and self.extra_headers is _NO_HEADERS and not self.failed:
            self.middleware.metrics.request("untouched")
        return write


class _LateStart:
    """Wraps an iterable whose application calls start_response while iterating."""

    def __init__(self, response: _Response, app_iter: Iterable[bytes]) -> None:
        self.response = response
        self.app_iter = app_iter

    def __iter__(self) -> Iterator[bytes]:
        response = self.response
        try:
            for chunk in self.app_iter:
                if response.failed:
                    break
                yield chunk
        except StoreUnavailable:
            if response.started or response.middleware.on_store_error != "fail":
                raise
            yield from response.unavailable()
            return
        if response.failed:
            yield UNAVAILABLE_BODY

    def close(self) -> None:
        _close(self.app_iter)


def _discard(data: bytes) -> None:
    """The write() callable of a response that was replaced by a 503."""


def _close(app_iter: Iterable[bytes]) -> None:
    close = getattr(app_iter, "close", None)
    if close is not None:
        close()


def _with_session_headers(headers: Headers, extra: Headers) -> Headers:
    """``headers`` plus the session's, with ``Cookie`` merged into any Vary."""
    if not extra:
        return headers
    if "vary" not in map(str.lower, map(_header_name, headers)):  # one scan, no Python frame
        return [*headers, *extra]  # the usual response: no Vary of its own
    result = list(headers)
    for name, value in extra:
        if name == "Vary":
            _add_vary_cookie(result)
        else:
            result.append((name, value))
    return result


_header_name = itemgetter(0)


def _add_vary_cookie(headers: Headers) -> None:
    """Add ``Cookie`` to the Vary header(s) ``headers`` has."""
    vary = [index for index, (name, _) in enumerate(headers) if name.lower() == "vary"]
    for index in vary:
        tokens = {token.strip().lower() for token in headers[index][1].split(",")}
        if "cookie" in tokens or "*" in tokens:
            return
    name, value = headers[vary[0]]
    headers[vary[0]] = (name, f"{value}, Cookie" if value.strip() else "Cookie")
