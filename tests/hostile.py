"""Every store behind every adapter, driven by raw WSGI calls with any Cookie header.

Shared by the hostile-input tests and ``make fuzz`` (``fuzz_cookies.py``). Each
:class:`Subject` is one store (memory, sqlite, memcached, redis, cookie) behind one
adapter (the plain WSGI middleware, Flask, Django). Its application answers
``"<new> <id>"`` for the session it was given; server-side stores are wrapped
in a :class:`LoadCounter`, so a test sees every key looked up.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memcached_server import MemcachedServer
from redis_server import RedisServer

from wsgi_session import MemoryStore, SessionMiddleware, Store
from wsgi_session.backends.cookie import CookieStore
from wsgi_session.stores.base import Version
from wsgi_session.stores.memcached import MemcachedStore
from wsgi_session.stores.redis import RedisStore
from wsgi_session.stores.sqlite import SQLiteStore

SECRET = "hostile-input-secret-0123456789abcdef0123456789abcdef"
STORES = ("memory", "sqlite", "memcached", "redis", "cookie")
ADAPTERS = ("wsgi", "flask", "django")
EXAMPLE_DJANGO = Path(__file__).resolve().parents[1] / "examples" / "django_project"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class LoadCounter:
    """A store that counts the keys looked up in the store it wraps (thread-safe)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.loads: Counter[str] = Counter()
        self._lock = threading.Lock()

    def load(self, key: str) -> tuple[bytes, Version] | None:
        with self._lock:
            self.loads[key] += 1
        return self.inner.load(key)

    def save(self, key: str, data: bytes, ttl: int, version: Version | None = None) -> bool:
        return self.inner.save(key, data, ttl, version)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def take(self) -> Counter[str]:
        """The loads counted since the last call."""
        with self._lock:
            loads, self.loads = self.loads, Counter()
        return loads


def store_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


@dataclass
class Answer:
    status: str
    headers: list[tuple[str, str]]
    new: bool
    id: str

    def set_cookie(self, name: str) -> str | None:
        """The value of the ``name`` cookie this response sets, if it sets one."""
        for header, value in self.headers:
            if header.lower() == "set-cookie" and value.startswith(name + "="):
                return value.split(";", 1)[0][len(name) + 1 :]
        return None


def environ_for(path: str, cookie: str | None) -> dict[str, Any]:
    """A GET request as a WSGI server would hand it over (headers are latin-1 text)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    return environ


@dataclass
class Subject:
    """One store behind one adapter."""

    store: str
    adapter: str
    app: WSGIApp
    cookie_name: str
    counter: LoadCounter | None  # None: the cookie store looks nothing up
    issued: dict[str, str] = field(default_factory=dict)  # cookie value -> session id
    # A migrating subject (migrate_from): the old system's cookies it may adopt, each
    # with the id it was adopted under once an answer showed it.
    issue_old: Callable[[], str] | None = None
    old_issued: dict[str, str | None] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.store}/{self.adapter}"

    def call(self, cookie: str | None, path: str = "/read") -> Answer:
        captured: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            captured[:] = [status, headers]
            return lambda data: None

        body_iter = self.app(environ_for(path, cookie), start_response)
        try:
            body = b"".join(body_iter)
        finally:
            close = getattr(body_iter, "close", None)
            if close is not None:
                close()
        status, headers = captured
        if not status.startswith("2"):
            return Answer(status, headers, False, "")
        new, _, session_id = body.decode().partition(" ")
        return Answer(status, headers, new == "1", session_id)

    def issue(self) -> str:
        """A new session with data in it: the cookie value the server issued."""
        answer = self.call(None, "/write")
        value = answer.set_cookie(self.cookie_name)
        assert answer.status.startswith("200") and value, answer
        self.issued[value] = answer.id
        return value

    def new_old_cookie(self) -> str:
        """An old system's cookie (a Flask one, with data), not adopted yet."""
        assert self.issue_old is not None
        value = self.issue_old()
        self.old_issued[value] = None
        return value

    def header_old_cookies(self, header: str) -> set[str]:
        """The old cookies ``header`` carries byte for byte as one of its pairs."""
        return {value for value in self.values_in(header) if value in self.old_issued}

    def header_names_issued(self, header: str) -> set[str]:
        """Ids of issued cookies that ``header`` carries byte for byte as one of its pairs."""
        return {self.issued[value] for value in self.values_in(header) if value in self.issued}

    def values_in(self, header: str) -> list[str]:
        """The values of the pairs of ``header`` named as the cookie.

        The header's optional whitespace (spaces and tabs around the name, the
        "=" and the value) is no part of them.
        """
        values = []
        for pair in header.split(";"):
            name, sep, value = pair.partition("=")
            if sep and name.strip(" \t") == self.cookie_name:
                values.append(value.strip(" \t"))
        return values


# -- the applications, one per adapter -------------------------------------------


def _answer(session: Any, raw: Any, write: bool) -> bytes:
    """Touch the session through the adapter's API; what the raw session then is."""
    if write:
        session["visits"] = session.get("visits", 0) + 1
    else:
        session.get("visits")
    return f"{int(raw.new)} {raw.id}".encode()


def wsgi_subject(store: Any) -> WSGIApp:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        session = environ["wsgi_session"]
        body = _answer(session, session, environ["PATH_INFO"] == "/write")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    return SessionMiddleware(app, SECRET, store=store)


def flask_subject(store: Any) -> WSGIApp:
    import flask

    from wsgi_session.flask import Session

    app = flask.Flask("hostile")
    app.config["SECRET_KEY"] = SECRET

    @app.route("/read")
    def read() -> bytes:
        return _answer(flask.session, flask.request.environ["wsgi_session"], False)

    @app.route("/write")
    def write() -> bytes:
        return _answer(flask.session, flask.request.environ["wsgi_session"], True)

    Session(app, store=store)
    return app  # type: ignore[return-value]


def _django_view(request: Any, write: bool) -> Any:
    from django.http import HttpResponse

    return HttpResponse(_answer(request.session, request.environ["wsgi_session"], write))


def django_read(request: Any) -> Any:
    return _django_view(request, False)


def django_write(request: Any) -> Any:
    return _django_view(request, True)


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [path("read", django_read), path("write", django_write)]


def __getattr__(name: str) -> Any:
    # This module is the ROOT_URLCONF of the Django subjects; Django is only
    # imported once one is built.
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


_django_lock = threading.Lock()


def setup_django(files: Path) -> None:
    """Django with the example project's settings (what ``test_django.py`` uses too).

    Its user database goes under ``files``; no subject uses it. Django is set up
    once per process: whoever comes first configures it.
    """
    import django
    from django.conf import settings

    with _django_lock:
        if settings.configured:
            django.setup()
            return
        saved = {name: os.environ.get(name) for name in _DJANGO_ENV}
        sys.path.insert(0, str(EXAMPLE_DJANGO))
        try:
            os.environ["DJANGO_SETTINGS_MODULE"] = "django_demo.settings"
            os.environ["DJANGO_DEMO_DB"] = str(files / "users.db")
            os.environ["DJANGO_DEMO_SESSIONS"] = f"sqlite://{files / 'sessions.db'}"
            django.setup()
        finally:
            sys.path.remove(str(EXAMPLE_DJANGO))
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


_DJANGO_ENV = ("DJANGO_SETTINGS_MODULE", "DJANGO_DEMO_DB", "DJANGO_DEMO_SESSIONS")


def django_subject(store: Any) -> WSGIApp:
    from django.core.wsgi import get_wsgi_application

    from wsgi_session.django import make_middleware

    return make_middleware(get_wsgi_application(), store=store)


ADAPTER_APPS: dict[str, Callable[[Any], WSGIApp]] = {
    "wsgi": wsgi_subject,
    "flask": flask_subject,
    "django": django_subject,
}
COOKIE_NAMES = {"wsgi": "session", "flask": "session", "django": "sessionid"}


@contextmanager
def django_urls() -> Iterator[None]:
    """Django's URLs are this module's while the block runs."""
    from django.test import override_settings

    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["127.0.0.1"]):
        yield


@contextmanager
def subjects(
    files: Path,
    memcached: MemcachedServer,
    redis: RedisServer,
    stores: Iterable[str] = STORES,
    adapters: Iterable[str] = ADAPTERS,
) -> Iterator[list[Subject]]:
    """A subject for each store and adapter; stores live under ``files``, in ``memcached``
    and in ``redis``."""
    adapters = list(adapters)
    with ExitStack() as stack:
        if "django" in adapters:
            setup_django(files)
            stack.enter_context(django_urls())
        made = []
        for store_name in stores:
            for adapter in adapters:
                inner: Any
                if store_name == "memory":
                    inner = MemoryStore()
                elif store_name == "sqlite":
                    inner = SQLiteStore(files / f"{adapter}.sqlite3")
                    stack.callback(inner.close)
                elif store_name == "memcached":
                    inner = MemcachedStore(
                        [memcached.address], key_prefix=f"hostile-{adapter}-{os.getpid()}:"
                    )
                    stack.callback(inner.close)
                elif store_name == "redis":
                    inner = RedisStore(redis.url, key_prefix=f"hostile-{adapter}-{os.getpid()}:")
                else:
                    inner = CookieStore()
                counter = None if store_name == "cookie" else LoadCounter(inner)
                app = ADAPTER_APPS[adapter](counter if counter is not None else inner)
                made.append(Subject(store_name, adapter, app, COOKIE_NAMES[adapter], counter))
        yield made


def migrating_subject(files: Path) -> Subject:
    """The plain middleware on a counted memory store, adopting Flask's cookie sessions.

    Its old cookies are issued by a real Flask application on Flask's own
    sessions, signed with the same secret.
    """
    import flask

    old = flask.Flask("hostile-old")
    old.config["SECRET_KEY"] = SECRET

    @old.route("/write")
    def write() -> str:
        flask.session["visits"] = 1
        return "ok"

    def issue_old() -> str:
        client = old.test_client()
        client.get("/write")
        found = client.get_cookie("session")
        assert found is not None
        return found.value

    counter = LoadCounter(MemoryStore())

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        session = environ["wsgi_session"]
        body = _answer(session, session, environ["PATH_INFO"] == "/write")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    wrapped = SessionMiddleware(app, SECRET, store=counter, migrate_from="flask")
    return Subject("memory<-flask", "wsgi", wrapped, "session", counter, issue_old=issue_old)
