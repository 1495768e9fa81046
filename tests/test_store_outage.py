"""A store outage while loading answers 503; it is logged once, not per request."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from helpers import SECRET, CountingStore, FakeClock, make
from hostile import ADAPTER_APPS, COOKIE_NAMES, Subject, django_urls, setup_django

from wsgi_session import StoreUnavailable
from wsgi_session.middleware import UNAVAILABLE_BODY
from wsgi_session.outage import OutageLog
from wsgi_session.session import new_session_id


@pytest.fixture(scope="module")
def django_ready(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    setup_django(tmp_path_factory.mktemp("outage-django"))
    with django_urls():
        yield


@pytest.fixture
def down_store() -> CountingStore:
    store = CountingStore()
    store.fail = {"load", "save", "delete"}
    return store


def subject(adapter: str, store: CountingStore) -> Subject:
    return Subject("memory", adapter, ADAPTER_APPS[adapter](store), COOKIE_NAMES[adapter], None)


def a_cookie(adapter: str, store: CountingStore) -> str:
    """The cookie of a stored session, issued while the store was up."""
    failing, store.fail = store.fail, set()
    cookie = subject(adapter, store).issue()
    store.fail = failing
    return f"{COOKIE_NAMES[adapter]}={cookie}"


@pytest.mark.parametrize("adapter", ["wsgi", "flask", "django"])
def test_a_load_the_store_cannot_answer_is_a_503_with_retry_after(
    adapter: str, down_store: CountingStore, django_ready: None
) -> None:
    target = subject(adapter, down_store)
    cookie = a_cookie(adapter, down_store)
    for _ in range(3):
        answer = target.call(cookie)
        assert answer.status[:3] == "503", answer
        headers = dict(answer.headers)
        assert headers["Retry-After"] == "1"
        assert "Set-Cookie" not in headers


def test_the_503_body_and_headers(down_store: CountingStore) -> None:
    client, _, _ = make(store=down_store)
    down_store.fail = set()
    client.get("/set")
    down_store.fail = {"load"}
    response = client.get("/read")
    assert response.status_code == 503
    assert response.data == UNAVAILABLE_BODY
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Content-Length"] == str(len(UNAVAILABLE_BODY))


def test_an_application_that_catches_the_outage_still_answers(down_store: CountingStore) -> None:
    def careful(session: Any) -> str:
        try:
            return str(session.get("user"))
        except StoreUnavailable:
            return "served without a session"

    client, _, _ = make({"careful": careful}, store=down_store)
    down_store.fail = set()
    client.get("/set")
    down_store.fail = {"load"}
    response = client.get("/careful")
    assert (response.status_code, response.text) == (200, "'served without a session'")


def test_an_application_that_answers_500_itself_is_left_alone_when_the_load_worked() -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["wsgi_session"].get("user")
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"the app's own error"]

    from werkzeug.test import Client

    from wsgi_session import MemoryStore, SessionMiddleware

    response = Client(SessionMiddleware(broken, "s" * 32, store=MemoryStore())).get("/")
    assert (response.status_code, response.data) == (500, b"the app's own error")


def test_a_load_failing_inside_a_lazy_body_before_the_response_started_is_a_503(
    down_store: CountingStore,
) -> None:
    from werkzeug.test import Client

    from wsgi_session import SessionMiddleware

    def lazy(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        user = environ["wsgi_session"].get("user")  # runs on the first next()
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield str(user).encode()

    client, _, _ = make(store=down_store)
    down_store.fail = set()
    client.get("/set")
    down_store.fail = {"load"}
    client.application = SessionMiddleware(lazy, SECRET, store=down_store)
    response = client.get("/")
    assert (response.status_code, response.data) == (503, UNAVAILABLE_BODY)
    assert response.headers["Retry-After"] == "1"
    assert isinstance(client, Client)


def test_degrade_still_serves_an_empty_session(down_store: CountingStore) -> None:
    client, _, _ = make(store=down_store, on_store_error="degrade")
    down_store.fail = set()
    client.get("/set")
    down_store.fail = {"load", "save"}
    response = client.get("/read")
    assert (response.status_code, response.text) == (200, "{}")


@pytest.mark.parametrize("policy", ["fail", "degrade"])
def test_an_outage_logs_one_traceback_then_counts_then_the_recovery(
    policy: str, down_store: CountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    client, middleware, _ = make(store=down_store, on_store_error=policy)
    down_store.fail = set()
    client.get("/set")
    clock = FakeClock(0.0)
    middleware.outage.clock = clock
    down_store.fail = {"load", "save"}
    caplog.set_level(logging.INFO, logger="wsgi_session")

    for _ in range(50):
        client.get("/set2")
    clock.advance(middleware.outage.interval)
    for _ in range(10):
        client.get("/set2")
    down_store.fail = set()
    client.get("/set2")
    client.get("/set2")

    records = [r for r in caplog.records if r.name == "wsgi_session"]
    assert [r.exc_info is not None for r in records] == [True, False, False], records
    first, summary, recovered = (r.getMessage() for r in records)
    assert "unavailable" in first
    assert "still unavailable: 50 more requests affected (51 in" in summary
    assert "answers again" in recovered and "60 requests were affected" in recovered


def test_an_outage_seen_only_by_visitors_without_a_session_logs_the_recovery(
    down_store: CountingStore, caplog: pytest.LogCaptureFixture
) -> None:
    client, middleware, _ = make(store=down_store)
    # A visitor whose session is gone (expired, logged out): each load finds nothing.
    client.set_cookie("session", middleware.backend.signer.sign(new_session_id()))  # type: ignore[attr-defined]
    caplog.set_level(logging.INFO, logger="wsgi_session")

    assert client.get("/read").status_code == 503
    down_store.fail = set()
    assert client.get("/read").status_code == 200

    messages = [r.getMessage() for r in caplog.records if r.name == "wsgi_session"]
    assert len(messages) == 2 and "unavailable" in messages[0], messages
    assert "answers again" in messages[1] and "1 requests were affected" in messages[1]


def test_the_outage_log_counts_from_many_threads() -> None:
    import threading

    logger = logging.getLogger("wsgi_session.test-outage")
    outage = OutageLog(logger, interval=3600.0)
    error = StoreUnavailable("down")
    threads = [
        threading.Thread(target=lambda: [outage.failure("down", error) for _ in range(500)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outage._total == 4000
    outage.success()
    assert not outage.down
