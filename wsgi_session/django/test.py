"""Django's test client, with every request passing through the session middleware.

Django's ``Client`` calls Django's request handler directly: the WSGI
middleware that ``wsgi.py`` puts around Django never runs, so there would be
no session. :class:`Client` puts it back, and does ``login()``,
``force_login()``, ``logout()`` and ``session`` through it instead of through
``SESSION_ENGINE``. Use it as ``client_class`` of your test cases.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user, login, logout
from django.core.exceptions import ImproperlyConfigured
from django.core.servers.basehttp import get_internal_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.test import Client as DjangoClient
from django.test import RequestFactory
from django.test.client import ClientHandler
from django.utils.cache import patch_vary_headers

from wsgi_session.django import DjangoSession, _DjangoSessions, attach
from wsgi_session.errors import StoreWriteFailed
from wsgi_session.middleware import SessionMiddleware as WSGISessionMiddleware
from wsgi_session.session import Session
from wsgi_session.wsgi import ExcInfo, Headers, StartResponse, Write, WSGIEnvironment

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


class Client(DjangoClient):
    """``django.test.Client`` whose requests pass through the session middleware.

    ``application`` is the middleware made by
    :func:`~wsgi_session.django.make_middleware`; by default the one that
    ``settings.WSGI_APPLICATION`` names (build it with a ``MemoryStore`` or a
    temporary SQLite file when ``wsgi.py`` sees it is under test). The other
    arguments are ``django.test.Client``'s.
    """

    def __init__(
        self, *args: Any, application: WSGISessionMiddleware | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        app = get_internal_wsgi_application() if application is None else application
        if not isinstance(app, _DjangoSessions):
            raise ImproperlyConfigured(
                f"{app!r} is not the session middleware: pass application=, or make "
                "settings.WSGI_APPLICATION name make_middleware(get_wsgi_application(), ...)"
            )
        self.sessions = app
        self.handler = _SessionClientHandler(app, self.handler.enforce_csrf_checks)

    @property
    def session(self) -> DjangoSession:  # type: ignore[override]  # Django's: a SESSION_ENGINE store
        """The client's session; what is assigned is stored by ``save()``."""
        environ = self._request().META
        policy = self.sessions.cookie_policy(environ)
        backend = self.sessions.backend_for(environ)
        session = Session(lambda: backend.open(policy.read(environ)))
        return _ClientSession(session, self.sessions, self, environ)

    def _login(self, user: AbstractBaseUser, backend: str | None = None) -> None:
        """What ``login()`` and ``force_login()`` do once they have a user."""
        self._in_session(lambda request: login(request, user, backend))

    def logout(self) -> None:
        def log_out(request: HttpRequest) -> None:
            request.user = get_user(request)
            logout(request)

        self._in_session(log_out)
        self.cookies = SimpleCookie()

    def _in_session(self, action: Callable[[HttpRequest], object]) -> None:
        """Run ``action`` on a request that has the client's session; keep its cookie."""
        request = self._request()

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            attach(request, DjangoSession.of(environ))
            action(request)
            start_response("204 No Content", [])
            return []

        status, headers, _ = _call(self.sessions, app, request.META)
        if not status.startswith("204"):
            raise StoreWriteFailed(f"the session middleware answered {status!r}: not saved")
        self.keep_cookies(headers)

    def _request(self) -> HttpRequest:
        """A request that carries the client's cookies."""
        factory = RequestFactory()
        factory.cookies = self.cookies
        return factory.get("/")

    def keep_cookies(self, headers: Headers) -> None:
        """Keep the Set-Cookie headers among ``headers``, as a browser would."""
        for name, value in headers:
            if name == "Set-Cookie":
                self.cookies.load(value)


class _ClientSession(DjangoSession):
    """The test client's session: ``save()`` stores it at once and keeps the cookie."""

    def __init__(
        self,
        session: Session,
        middleware: _DjangoSessions,
        client: Client,
        environ: WSGIEnvironment,
    ) -> None:
        super().__init__(session, middleware)
        self.client = client
        self.environ = environ

    def save(self) -> None:
        super().save()
        middleware = self.middleware
        headers = middleware.session_headers(
            self.raw,
            middleware.backend_for(self.environ),
            middleware.cookie_policy(self.environ),
            self.environ,
        )
        self.client.keep_cookies(headers)
        # Go on from what was stored, as the next request would: saving again
        # then updates that record instead of creating it a second time.
        reopened = self.client.session
        assert isinstance(reopened, _ClientSession)
        self.raw, self.environ = reopened.raw, reopened.environ


class _SessionClientHandler(ClientHandler):
    """Django's test handler inside the session middleware."""

    def __init__(self, sessions: _DjangoSessions, enforce_csrf_checks: bool) -> None:
        super().__init__(enforce_csrf_checks)
        self.sessions = sessions

    def __call__(self, environ: WSGIEnvironment) -> Any:
        handle = super().__call__
        responses: list[HttpResponseBase] = []

        def django(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            response = handle(environ)
            responses.append(response)
            start_response(f"{response.status_code} {response.reason_phrase}", [])
            return []

        status, headers, body = _call(self.sessions, django, environ)
        (response,) = responses
        if not status.startswith(f"{response.status_code} "):
            # The middleware answered instead: the session could not be saved.
            failed = HttpResponse(body, status=int(status[:3]))
            failed.wsgi_request = response.wsgi_request  # type: ignore[attr-defined]
            return failed
        for name, value in headers:
            if name == "Set-Cookie":
                response.cookies.load(value)
            elif name == "Vary":
                patch_vary_headers(response, ("Cookie",))
        return response


def _call(
    sessions: _DjangoSessions,
    app: Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]],
    environ: WSGIEnvironment,
) -> tuple[str, Headers, bytes]:
    """Run ``app`` inside ``sessions``: the status, the headers they added, the body."""
    around = copy.copy(sessions)  # the same store, keys and settings around another app
    around.app = app
    started: list[tuple[str, Headers]] = []

    def start_response(status: str, headers: Headers, exc_info: ExcInfo | None = None) -> Write:
        started.append((status, headers))
        return _ignore

    chunks = around(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status, headers = started[0]
    return status, headers, body


def _ignore(data: bytes) -> None:
    """The write() callable: the applications run here never call it."""
