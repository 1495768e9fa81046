"""The WSGI flow: laziness, Vary, persisting in start_response, store failures."""

from __future__ import annotations

import gc
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from helpers import (
    ROUTES,
    SECRET,
    ClosingBody,
    CountingStore,
    Environ,
    StartResponse,
    make,
    one_cookie,
    session_app,
    set_cookies,
    stored_data,
)
from werkzeug.test import Client, EnvironBuilder

from wsgi_session import (
    ConfigurationError,
    MemoryStore,
    ServerSideBackend,
    Session,
    SessionMiddleware,
    SessionSealed,
    StoreUnavailable,
    StoreWriteFailed,
)
from wsgi_session.backends import Backend
from wsgi_session.cookies import CookiePolicy, KeyRing
from wsgi_session.lifetime import Lifetime
from wsgi_session.middleware import UNAVAILABLE_BODY

# -- laziness --------------------------------------------------------------


def test_untouched_request_makes_no_store_calls_and_sends_no_session_headers() -> None:
    client, _, store = make()
    client.get("/set")  # the client now holds a valid session cookie
    store.calls.clear()

    response = client.get("/nothing")

    assert response.status_code == 200
    assert store.total == 0
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers


def test_read_only_request_loads_once_and_varies_without_writing() -> None:
    client, _, store = make()
    client.get("/set")
    store.calls.clear()

    response = client.get("/read")

    assert response.text == "{'user': 'alice'}"
    assert store.calls == {"load": 1}
    assert "Set-Cookie" not in response.headers
    assert response.headers.getlist("Vary") == ["Cookie"]


@pytest.mark.parametrize("path", ["/read", "/set2"])
def test_a_request_that_used_its_session_leaves_nothing_for_the_garbage_collector(
    path: str,
) -> None:
    # The session's opener held the middleware's response object, which holds the
    # environ, which holds the session: each request's objects waited for a
    # collection. Dropped once loaded, they go with the request.
    client, middleware, _ = make()
    cookie = one_cookie(client.get("/set")).value
    environ = EnvironBuilder(path, headers={"Cookie": f"session={cookie}"}).get_environ()
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            body = middleware(dict(environ), lambda status, headers, exc_info=None: None)
            assert b"".join(body)
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_request_without_cookie_that_reads_makes_no_store_calls() -> None:
    client, _, store = make()

    response = client.get("/read")

    assert response.text == "{}"
    assert store.total == 0
    assert "Set-Cookie" not in response.headers
    assert response.headers["Vary"] == "Cookie"


# -- Vary --------------------------------------------------------------------


def vary_app(*vary: str, touch: bool = True) -> Client:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if touch:
            environ["wsgi_session"].get("user")
        start_response("200 OK", [("Vary", value) for value in vary])
        return [b"ok"]

    return Client(SessionMiddleware(app, SECRET, store=MemoryStore()))


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ((), ["Cookie"]),
        (("Accept-Encoding",), ["Accept-Encoding, Cookie"]),
        (("cookie",), ["cookie"]),
        (("Accept-Encoding, COOKIE",), ["Accept-Encoding, COOKIE"]),
        (("*",), ["*"]),
        (("Accept-Encoding", "Origin"), ["Accept-Encoding, Cookie", "Origin"]),
        (("Accept-Encoding", "Cookie"), ["Accept-Encoding", "Cookie"]),
    ],
)
def test_vary_cookie_is_merged_and_never_duplicated(
    sent: tuple[str, ...], expected: list[str]
) -> None:
    response = vary_app(*sent).get("/")

    assert response.headers.getlist("Vary") == expected


def test_vary_is_left_alone_when_session_untouched() -> None:
    response = vary_app("Accept-Encoding", touch=False).get("/")

    assert response.headers.getlist("Vary") == ["Accept-Encoding"]


# -- store write failures ----------------------------------------------------


def writing_app(body: ClosingBody) -> Any:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi_session"]["user"] = "alice"
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", "9")])
        return body

    return app


@pytest.mark.parametrize("error", [StoreUnavailable, StoreWriteFailed])
def test_failed_write_answers_503_discards_and_closes_body(
    error: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    store = CountingStore()
    store.error = error
    store.fail.add("save")  # fault injection
    body = ClosingBody([b"app body!"])
    client = Client(SessionMiddleware(writing_app(body), SECRET, store=store))

    with caplog.at_level(logging.ERROR, logger="wsgi_session"):
        response = client.get("/")

    assert response.status_code == 503
    assert response.data == UNAVAILABLE_BODY
    assert response.headers["Content-Length"] == str(len(UNAVAILABLE_BODY))
    assert "text/html" not in response.headers["Content-Type"]
    assert "Set-Cookie" not in response.headers
    assert body.closed
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "503" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is not None


def test_failed_write_degrades_to_200_without_cookie(caplog: pytest.LogCaptureFixture) -> None:
    store = CountingStore()
    store.fail.add("save")  # fault injection
    body = ClosingBody([b"app body!"])
    client = Client(
        SessionMiddleware(writing_app(body), SECRET, store=store, on_store_error="degrade")
    )

    with caplog.at_level(logging.ERROR, logger="wsgi_session"):
        response = client.get("/", buffered=True)

    assert response.status_code == 200
    assert response.data == b"app body!"
    assert "Set-Cookie" not in response.headers
    assert response.headers["Vary"] == "Cookie"
    assert body.closed
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert len(store.inner) == 0


def test_failed_load_reaches_the_app_when_policy_is_fail() -> None:
    client, _, store = make()
    client.get("/set")
    store.fail.add("load")  # fault injection
    seen: list[BaseException] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            environ["wsgi_session"].get("user")
        except StoreUnavailable as exc:
            seen.append(exc)
            raise
        start_response("200 OK", [])
        return [b""]

    client.application = SessionMiddleware(app, SECRET, store=store)
    assert client.get("/read").status_code == 503  # let through by the app: a 503
    assert len(seen) == 1
    assert store.calls["save"] == 1  # only the first request's


def test_failed_load_degrades_to_empty_session_and_keeps_the_cookie(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _, store = make(on_store_error="degrade")
    cookie = one_cookie(client.get("/set"))
    store.fail.add("load")  # fault injection: the store goes away for one request

    with caplog.at_level(logging.ERROR, logger="wsgi_session"):
        down = client.get("/read")

    assert down.status_code == 200
    assert down.text == "{}"
    assert set_cookies(down) == []  # a store blip must not log the user out
    assert any(r.levelno == logging.ERROR for r in caplog.records)

    store.fail.clear()
    back = client.get("/read")
    assert back.text == "{'user': 'alice'}"
    assert stored_data(store, cookie.session_id) == {"user": "alice"}


def test_changes_while_load_degraded_are_dropped_not_saved_under_a_new_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, _, store = make(on_store_error="degrade")
    client.get("/set")
    store.fail.add("load")  # fault injection: down while loading only
    saves = store.calls["save"]

    with caplog.at_level(logging.ERROR, logger="wsgi_session"):
        response = client.get("/set2")

    assert response.status_code == 200
    assert set_cookies(response) == []
    assert store.calls["save"] == saves
    assert any("dropped" in r.getMessage() for r in caplog.records)
    store.fail.clear()
    assert client.get("/read").text == "{'user': 'alice'}"


def test_invalid_on_store_error_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="on_store_error"):
        SessionMiddleware(lambda e, s: [], SECRET, store=MemoryStore(), on_store_error="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("idle_timeout", "14d", "idle_timeout must be a whole number of seconds"),
        ("idle_timeout", 0, "idle_timeout must be between 1 and"),
        ("idle_timeout", 10**400, "idle_timeout must be between 1 and"),
        ("absolute_timeout", -1, "absolute_timeout must be between 1 and"),
        ("refresh_interval", 3600, "refresh_interval (3600 s) must be shorter than idle_timeout"),
        ("secret_key", None, "secret_key must be str or bytes"),
    ],
)
def test_bad_settings_fail_at_construction_naming_them(
    option: str, value: Any, message: str
) -> None:
    options: dict[str, Any] = {"secret_key": SECRET, "idle_timeout": 3600, option: value}
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        SessionMiddleware(lambda e, s: [], store=MemoryStore(), **options)


def test_fallback_keys_none_means_no_fallbacks() -> None:
    middleware = SessionMiddleware(
        session_app(ROUTES), SECRET, store=MemoryStore(), fallback_keys=None
    )
    client = Client(middleware)
    assert client.get("/read").status_code == 200


def test_store_without_the_protocol_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="store"):
        SessionMiddleware(lambda e, s: [], SECRET, store=object())  # type: ignore[arg-type]


# -- after the headers -------------------------------------------------------


@pytest.mark.parametrize("touch_first", [True, False], ids=["accessed", "untouched"])
def test_change_after_headers_raises_sealed(touch_first: bool) -> None:
    store = CountingStore()

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        session = environ["wsgi_session"]
        if touch_first:
            session.get("user")
        start_response("200 OK", [])
        yield b"head"
        session["late"] = True
        yield b"tail"

    with pytest.raises(SessionSealed, match="start_response"):
        Client(SessionMiddleware(app, SECRET, store=store)).get("/", buffered=True)
    assert store.calls["save"] == 0


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.regenerate(),
        lambda s: s.destroy(),
        lambda s: setattr(s, "permanent", True),
        lambda s: s.clear(),
        lambda s: s.pop("user"),
        lambda s: setattr(s, "modified", True),
    ],
    ids=["regenerate", "destroy", "permanent", "clear", "pop", "modified"],
)
def test_every_kind_of_change_after_headers_is_refused(change: Any) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        session = environ["wsgi_session"]
        session["user"] = "alice"
        start_response("200 OK", [])
        change(session)
        yield b""

    with pytest.raises(SessionSealed):
        Client(SessionMiddleware(app, SECRET, store=MemoryStore())).get("/", buffered=True)


# -- the app iterable, exc_info, file_wrapper --------------------------------


def call(app: Any, **builder: Any) -> tuple[list[tuple[Any, ...]], Any]:
    """Run ``app`` the way a server does and return (start_response calls, result)."""
    environ = EnvironBuilder(**builder).get_environ()
    calls: list[tuple[Any, ...]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        calls.append((status, headers, exc_info))
        return lambda data: None

    return calls, app(environ, start_response)


@pytest.mark.parametrize("route", ["nothing", "read", "set"])
def test_app_iterable_is_closed(route: str) -> None:
    body = ClosingBody([b"x"])

    def app(environ: Environ, start_response: StartResponse) -> ClosingBody:
        if route == "read":
            environ["wsgi_session"].get("user")
        elif route == "set":
            environ["wsgi_session"]["user"] = "alice"
        start_response("200 OK", [])
        return body

    response = Client(SessionMiddleware(app, SECRET, store=MemoryStore())).get("/", buffered=True)

    assert response.data == b"x"
    assert body.closed


def test_exc_info_passes_through_with_the_session_headers() -> None:
    failure: list[Any] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi_session"]["user"] = "alice"
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("boom")
        except KeyError:
            failure.append(sys.exc_info())
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"error page"]

    calls, result = call(SessionMiddleware(app, SECRET, store=MemoryStore()))

    assert list(result) == [b"error page"]
    assert [status for status, _, _ in calls] == ["200 OK", "500 Internal Server Error"]
    assert calls[1][2] == failure[0]
    assert calls[0][2] is None
    error_headers = dict(calls[1][1])
    assert error_headers["Set-Cookie"].startswith("session=")
    assert error_headers["Vary"] == "Cookie"


def test_file_wrapper_is_returned_unchanged() -> None:
    class FileWrapper:
        def __init__(self, filelike: Any, block_size: int = 8192) -> None:
            self.filelike = filelike

        def __iter__(self) -> Iterator[bytes]:
            yield self.filelike

    def app(environ: Environ, start_response: StartResponse) -> Any:
        environ["wsgi_session"]["user"] = "alice"
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](b"file")

    calls, result = call(
        SessionMiddleware(app, SECRET, store=MemoryStore()),
        environ_overrides={"wsgi.file_wrapper": FileWrapper},
    )

    assert type(result) is FileWrapper
    assert result.filelike == b"file"
    assert dict(calls[0][1])["Set-Cookie"].startswith("session=")


def late_start_app(body: list[bytes], closed: list[bool]) -> Any:
    """An app whose generator touches the session and calls start_response on first next()."""

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        try:
            environ["wsgi_session"]["user"] = "alice"
            start_response("200 OK", [("Content-Length", str(sum(map(len, body))))])
            yield from body
        finally:
            closed.append(True)

    return app


def test_late_start_response_still_saves_the_session() -> None:
    closed: list[bool] = []
    store = CountingStore()
    client = Client(SessionMiddleware(late_start_app([b"a", b"b"], closed), SECRET, store=store))

    response = client.get("/", buffered=True)

    assert response.status_code == 200
    assert response.data == b"ab"
    cookie = one_cookie(response)
    assert stored_data(store, cookie.session_id) == {"user": "alice"}
    assert response.headers["Vary"] == "Cookie"
    assert closed == [True]


class LateStartBody:
    """An app iterable that calls start_response on first iteration and has close()."""

    def __init__(self, environ: Environ, start_response: StartResponse) -> None:
        self.environ = environ
        self.start_response = start_response
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        self.environ["wsgi_session"]["user"] = "alice"
        self.start_response("200 OK", [])
        yield b"first"
        yield b"never read"

    def close(self) -> None:
        self.closed = True


def test_late_start_iterable_is_closed_even_when_not_exhausted() -> None:
    bodies: list[LateStartBody] = []

    def app(environ: Environ, start_response: StartResponse) -> LateStartBody:
        bodies.append(LateStartBody(environ, start_response))
        return bodies[0]

    calls, result = call(SessionMiddleware(app, SECRET, store=MemoryStore()))
    assert next(iter(result)) == b"first"
    result.close()

    assert bodies[0].closed
    assert dict(calls[0][1])["Set-Cookie"].startswith("session=")


@pytest.mark.parametrize("body", [[b"a", b"b"], []], ids=["with-body", "empty-body"])
def test_late_start_response_still_answers_503_on_store_failure(
    caplog: pytest.LogCaptureFixture, body: list[bytes]
) -> None:
    closed: list[bool] = []
    store = CountingStore()
    store.fail.add("save")  # fault injection
    client = Client(SessionMiddleware(late_start_app(body, closed), SECRET, store=store))

    with caplog.at_level(logging.ERROR, logger="wsgi_session"):
        response = client.get("/", buffered=True)

    assert response.status_code == 503
    assert response.data == UNAVAILABLE_BODY
    assert "Set-Cookie" not in response.headers
    assert closed == [True]
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_environ_key_is_configurable() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        environ["my.session"]["user"] = "alice"
        start_response("200 OK", [])
        return [b""]

    store = CountingStore()
    response = Client(SessionMiddleware(app, SECRET, store=store, environ_key="my.session")).get(
        "/"
    )

    assert stored_data(store, one_cookie(response).session_id) == {"user": "alice"}


class ReplayingStore(CountingStore):
    """Fault injection: the first create lands but answers "exists", as a client
    retry of a create whose reply was lost would (a real server cannot be made
    to drop that reply on demand)."""

    def save(self, key: str, data: bytes, ttl: int, version: Any = None) -> bool:
        stored = super().save(key, data, ttl, version)
        if version is None and self.calls["save"] == 1:
            return False
        return stored


def test_a_create_that_landed_but_answered_exists_is_not_an_error() -> None:
    store = ReplayingStore()
    client = Client(SessionMiddleware(session_app(ROUTES), SECRET, store=store))

    response = client.get("/set")

    assert response.status_code == 200
    assert stored_data(store, one_cookie(response).session_id) == {"user": "alice"}


def test_a_create_that_finds_someone_elses_record_is_a_503() -> None:
    class Colliding(CountingStore):
        """Fault injection: every key already holds another session's record."""

        def save(self, key: str, data: bytes, ttl: int, version: Any = None) -> bool:
            if version is None:
                self.inner.save(key, b'1 0 0 0 0 {"user":"mallory"}', ttl)
            return super().save(key, data, ttl, version)

    client = Client(SessionMiddleware(session_app(ROUTES), SECRET, store=Colliding()))

    assert client.get("/set").status_code == 503


# -- the cookie a write sends ----------------------------------------------


def test_a_write_resends_the_cookie_it_came_with_only_when_signing_would_give_the_same() -> None:
    # A write re-sends the request's own cookie instead of signing the id again
    # (ServerSideBackend.send): only when that is the very text signing would give.
    def signed(session_id: str, secret: str = SECRET) -> str:
        # The default session is not permanent: its cookie's id is marked so.
        return KeyRing(secret).signer("wsgi_session.id").sign(session_id + ".b")

    store = CountingStore()
    client, _, _ = make(store=store)
    first = one_cookie(client.get("/set"))

    assert one_cookie(client.get("/set2")).value == first.value == signed(first.session_id)
    regenerated = one_cookie(client.get("/regenerate"))
    assert regenerated.session_id != first.session_id
    assert regenerated.value == signed(regenerated.session_id)

    # Signed with what is now a fallback key: the write sends the current key's signature.
    old_secret = SECRET[::-1]
    rotated = Client(
        SessionMiddleware(session_app(ROUTES), SECRET, store=store, fallback_keys=[old_secret])
    )
    rotated.set_cookie("session", signed(regenerated.session_id, old_secret))
    assert one_cookie(rotated.get("/set")).value == regenerated.value


def test_the_backend_keeps_the_cookie_it_verified_and_a_write_sends_that_very_text() -> None:
    # Every caller of ServerSideBackend.open gets this (the middleware, Django's
    # wsgi.py mode, the test client): no signing on a write under the same id.
    backend = ServerSideBackend(MemoryStore(), KeyRing(SECRET), Lifetime())
    new = Session(lambda: backend.open(None))
    new["n"] = 1
    created = backend.commit(new)
    assert created is not None and created.value is not None
    incoming = (created.value + ".")[:-1]  # the same text, another object: what a request parses
    assert incoming is not created.value

    written = Session(lambda: backend.open(incoming))
    assert written.origin.cookie is incoming
    written["n"] = 2
    update = backend.commit(written)
    assert update is not None and update.value is incoming  # re-sent, not signed again

    regenerated = Session(lambda: backend.open(incoming))
    regenerated.regenerate()
    moved = backend.commit(regenerated)
    assert moved is not None and moved.value is not None and moved.value != incoming


@pytest.mark.parametrize("hook", ["cookie_policy", "settings_for"])
def test_a_subclass_overriding_a_settings_hook_is_asked_on_each_request(hook: str) -> None:
    # SessionMiddleware reads its own fixed answers without the hooks' calls, but
    # never when a subclass says otherwise (per tenant, per mount point...).
    per_request = CookiePolicy(name="tenant_session")

    class Tenant(SessionMiddleware):
        def cookie_policy(self, environ: Environ) -> CookiePolicy:
            return per_request

        def settings_for(self, environ: Environ) -> tuple[CookiePolicy, Backend]:
            return per_request, self.backend

    if hook == "cookie_policy":
        del Tenant.settings_for
    else:
        del Tenant.cookie_policy
    client = Client(Tenant(session_app(ROUTES), SECRET, store=MemoryStore()))
    assert [cookie.name for cookie in set_cookies(client.get("/set"))] == ["tenant_session"]
