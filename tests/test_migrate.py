"""Adoption of the sessions of the system being replaced: our own old stores as the source.

The old deployment is a real SessionMiddleware on a real store (SQLite, memcached,
Redis); the new one the same application on another store with ``migrate_from``.
The client keeps its cookie jar across the switch, as a browser does.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import ROUTES, SECRET, START, CountingStore, FakeClock, session_app, set_cookies
from memcached_server import MemcachedServer
from redis_server import RedisServer
from werkzeug.test import Client

from wsgi_session import ConfigurationError, MemoryStore, SessionMiddleware
from wsgi_session.backends.adoption import LOG_EVERY, mark_key
from wsgi_session.cookies import KeyRing
from wsgi_session.stores.memcached import MemcachedStore
from wsgi_session.stores.redis import RedisStore
from wsgi_session.stores.sqlite import SQLiteStore

ROUTES_WITH_LOGIN = {
    **ROUTES,
    "login": lambda session: (session.regenerate(), session.update(user="alice", cart=[1, 2])),
    "permanent_login": lambda session: (
        session.regenerate(),
        session.update(user="alice"),
        setattr(session, "permanent", True),
    ),
}
APP = session_app(ROUTES_WITH_LOGIN)


def deployment(store: Any, clock: FakeClock, **options: Any) -> SessionMiddleware:
    return SessionMiddleware(APP, SECRET, store=store, clock=clock, **options)


def cookie_of(client: Client, name: str = "session") -> str | None:
    found = client.get_cookie(name)
    return None if found is None else found.value


def logged_in_on(old: SessionMiddleware, route: str = "login") -> tuple[Client, str]:
    client = Client(old)
    client.get(f"/{route}")
    old_cookie = cookie_of(client)
    assert old_cookie is not None
    return client, old_cookie


def replay(app: SessionMiddleware, old_cookie: str, path: str = "/read") -> Any:
    client = Client(app)
    client.set_cookie("session", old_cookie)
    return client.get(path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "old-sessions.db"


def test_sqlite_to_redis_keeps_the_user_logged_in_under_a_new_id(
    sqlite_path: Path, redis_server: RedisServer, clock: FakeClock
) -> None:
    old_store = SQLiteStore(sqlite_path)
    client, old_cookie = logged_in_on(deployment(old_store, clock))
    new_store = RedisStore(redis_server.url)
    new = deployment(new_store, clock, migrate_from=f"sqlite:///{sqlite_path}")
    client.application = new  # the same browser, after the deploy

    response = client.get("/read")

    assert response.text == repr({"user": "alice", "cart": [1, 2]})
    (cookie,) = set_cookies(response)
    assert cookie.name == "session" and not cookie.expires_now
    assert cookie.value != old_cookie
    assert cookie.session_id != old_cookie.split(".", 1)[0]  # never the old id
    old_id = old_cookie.split(".", 1)[0]
    assert SQLiteStore(sqlite_path).load(_key(old_id)) is None  # the old record is gone
    assert new_store.load(_key(cookie.session_id)) is not None
    # Our own cookie from now on: read as any session of ours, nothing sent.
    again = client.get("/read")
    assert again.text == response.text and set_cookies(again) == []


def _id(cookie: str) -> str:
    return cookie.split(".", 1)[0]


def _key(session_id: str) -> str:
    from helpers import store_key

    return store_key(session_id)


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_memcached_to_redis_including_sealed_records(
    memcached_server: MemcachedServer, redis_server: RedisServer, clock: FakeClock, sealed: bool
) -> None:
    old = deployment(MemcachedStore(memcached_server.address), clock, seal_records=sealed)
    client, _ = logged_in_on(old, "permanent_login")
    new = deployment(
        RedisStore(redis_server.url),
        clock,
        seal_records=sealed,
        migrate_from=f"memcached://{memcached_server.address}",
    )
    client.application = new

    response = client.get("/read")

    assert response.text == repr({"user": "alice"})
    (cookie,) = set_cookies(response)
    assert "max-age" in cookie.attrs  # still permanent


def test_redis_to_sqlite_with_the_url_setting(redis_server: RedisServer, sqlite_path: Path) -> None:
    from wsgi_session.config import from_settings

    # Real time on both sides: the settings' middleware has the real clock.
    client, _ = logged_in_on(SessionMiddleware(APP, SECRET, store=RedisStore(redis_server.url)))
    new = from_settings(
        APP,
        {
            "WSGI_SESSION_SECRET_KEY": SECRET,
            "WSGI_SESSION_STORE": f"sqlite:///{sqlite_path}",
            "WSGI_SESSION_MIGRATE_FROM": redis_server.url,
        },
        "WSGI_SESSION_",
    )
    client.application = new
    assert client.get("/read").text == repr({"user": "alice", "cart": [1, 2]})


# -- at most once, the grace window, logout ------------------------------------


@pytest.fixture
def switched(clock: FakeClock) -> tuple[CountingStore, MemoryStore, str, SessionMiddleware]:
    """An old session in ``old``; the new deployment adopting from it, not yet asked."""
    old = MemoryStore()
    _, old_cookie = logged_in_on(deployment(old, clock))
    new_store = CountingStore()
    new = deployment(new_store, clock, migrate_from=_source_of(old))
    return new_store, old, old_cookie, new


def _source_of(store: MemoryStore) -> Any:
    from wsgi_session.migrate.stores import StoreSource

    return lambda host: StoreSource(store, host, "memory (the old deployment's)")


def test_within_the_grace_window_the_old_cookie_reaches_the_adopted_session(
    switched: tuple[CountingStore, MemoryStore, str, SessionMiddleware], clock: FakeClock
) -> None:
    _, _, old_cookie, new = switched
    first = replay(new, old_cookie)
    clock.advance(29)
    second = replay(new, old_cookie)

    assert second.text == first.text == repr({"user": "alice", "cart": [1, 2]})
    assert set_cookies(second)[0].value == set_cookies(first)[0].value  # the same session


def test_after_the_grace_window_the_old_cookie_opens_nothing(
    switched: tuple[CountingStore, MemoryStore, str, SessionMiddleware], clock: FakeClock
) -> None:
    _, _, old_cookie, new = switched
    replay(new, old_cookie)
    clock.advance(31)
    late = replay(new, old_cookie)
    assert late.text == "{}"
    assert [cookie.value for cookie in set_cookies(late)] in ([], [""])  # at most expired


def test_keep_old_leaves_the_old_record_and_still_adopts_once(clock: FakeClock) -> None:
    old = MemoryStore()
    _, old_cookie = logged_in_on(deployment(old, clock))
    new = deployment(MemoryStore(), clock, migrate_from=_source_of(old), migrate_keep_old=True)
    replay(new, old_cookie)
    assert old.load(_key(old_cookie.split(".", 1)[0])) is not None  # left for a rollback
    clock.advance(31)
    assert replay(new, old_cookie).text == "{}"  # the mark still refuses it


def test_a_logout_on_the_new_side_is_never_undone_by_the_old_cookie(
    switched: tuple[CountingStore, MemoryStore, str, SessionMiddleware], clock: FakeClock
) -> None:
    _, _, old_cookie, new = switched
    client = Client(new)
    client.set_cookie("session", old_cookie)
    client.get("/read")
    logout = client.get("/destroy")
    assert set_cookies(logout)[0].expires_now
    assert replay(new, old_cookie).text == "{}"  # within the grace window: still nothing
    clock.advance(31)
    assert replay(new, old_cookie).text == "{}"


def test_parallel_requests_with_one_old_cookie_end_in_one_session(clock: FakeClock) -> None:
    old = MemoryStore()
    _, old_cookie = logged_in_on(deployment(old, clock))
    new_store = MemoryStore()
    new = deployment(new_store, clock, migrate_from=_source_of(old))
    cookies: list[str] = []
    bodies: list[str] = []
    barrier = threading.Barrier(16)

    def request() -> None:
        barrier.wait(timeout=10)
        response = replay(new, old_cookie)
        bodies.append(response.text)
        cookies.extend(cookie.value for cookie in set_cookies(response))

    threads = [threading.Thread(target=request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert bodies == [repr({"user": "alice", "cart": [1, 2]})] * 16
    assert len(cookies) == 16 and len(set(cookies)) == 1  # one session, every one got it
    sessions = [key for key in new_store._records if key != mark_key(_id(old_cookie))]
    assert len(sessions) == 1


# -- bad input, outages, the log ------------------------------------------------


def test_a_forged_old_cookie_costs_no_lookup(
    switched: tuple[CountingStore, MemoryStore, str, SessionMiddleware],
) -> None:
    new_store, _, old_cookie, new = switched
    forged = old_cookie[:-2] + ("AA" if not old_cookie.endswith("AA") else "BB")
    response = replay(new, forged)
    assert response.text == "{}" and set_cookies(response) == []
    assert new_store.total == 0


def test_an_old_cookie_of_another_secret_is_not_adopted(clock: FakeClock) -> None:
    old = MemoryStore()
    other = SessionMiddleware(APP, "another-secret-" + "x" * 32, store=old, clock=clock)
    _, old_cookie = logged_in_on(other)
    new = deployment(MemoryStore(), clock, migrate_from=_source_of(old))
    assert replay(new, old_cookie).text == "{}"


def test_an_unreadable_old_record_is_a_fresh_session_and_a_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    old = MemoryStore()
    _, old_cookie = logged_in_on(deployment(old, clock))
    key = _key(old_cookie.split(".", 1)[0])
    old.delete(key)
    assert old.save(key, b"\x80\x04\x95 a pickle, never unpickled", 600, None)
    new = deployment(MemoryStore(), clock, migrate_from=_source_of(old))
    with caplog.at_level(logging.WARNING, "wsgi_session"):
        assert replay(new, old_cookie).text == "{}"
    assert "unreadable" in caplog.text


def test_an_outage_of_the_source_answers_503_then_adopts_once_it_is_back(
    clock: FakeClock,
) -> None:
    old = CountingStore()
    _, old_cookie = logged_in_on(deployment(old.inner, clock))
    new = deployment(MemoryStore(), clock, migrate_from=lambda host: _counting_source(old, host))
    old.fail = {"load"}  # fault injection: a real server cannot be made to fail one call
    assert replay(new, old_cookie).status_code == 503
    old.fail = set()
    assert replay(new, old_cookie).text == repr({"user": "alice", "cart": [1, 2]})


def _counting_source(store: CountingStore, host: Any) -> Any:
    from wsgi_session.migrate.stores import StoreSource

    return StoreSource(store, host, "counting")


def test_adoptions_are_counted_in_the_log_at_most_once_a_minute(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    old = MemoryStore()
    cookies = [logged_in_on(deployment(old, clock))[1] for _ in range(3)]
    new = deployment(MemoryStore(), clock, migrate_from=_source_of(old))
    with caplog.at_level(logging.INFO, "wsgi_session"):
        for cookie in cookies[:2]:
            replay(new, cookie)
        clock.advance(LOG_EVERY)
        replay(new, cookies[2])
    counts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("adopted")]
    assert len(counts) == 2, counts
    assert counts[1].startswith("adopted 2 session(s)")


def test_an_ordinary_request_with_our_cookie_never_asks_the_source(clock: FakeClock) -> None:
    old = CountingStore()
    new = deployment(MemoryStore(), clock, migrate_from=lambda host: _counting_source(old, host))
    client = Client(new)
    client.get("/set")
    client.get("/read")
    client.get("/set2")
    assert old.total == 0


def test_bad_migration_settings_fail_at_start_up_naming_the_setting(clock: FakeClock) -> None:
    with pytest.raises(ConfigurationError) as error:
        deployment(MemoryStore(), clock, migrate_from="gopher://old")
    assert error.value.setting == "migrate_from"
    with pytest.raises(ConfigurationError) as error:
        deployment(MemoryStore(), clock, migrate_from="cookie://")
    assert error.value.setting == "migrate_from"
    with pytest.raises(ConfigurationError) as error:
        deployment(MemoryStore(), clock, migrate_from="memory://", migrate_grace=-1)
    assert error.value.setting == "migrate_grace"


def test_adopted_sessions_keep_what_is_left_of_the_old_lifetime(clock: FakeClock) -> None:
    old = MemoryStore()
    _, old_cookie = logged_in_on(deployment(old, clock, idle_timeout=3600))
    clock.advance(3000)  # 600 s left
    new_store = CountingStore()
    new = deployment(new_store, clock, idle_timeout=3600, migrate_from=_source_of(old))
    client = Client(new)
    client.set_cookie("session", old_cookie)
    new_id = set_cookies(client.get("/read"))[0].session_id
    clock.advance(601)  # the user never came back: it ends when the old one would have
    client.set_cookie("session", KeyRing(SECRET).signer("wsgi_session.id").sign(new_id))
    assert client.get("/read").text == "{}"
    assert START  # (the fake clock starts there)


def test_an_adopted_session_is_listed_under_its_owner_at_once(clock: FakeClock) -> None:
    old = MemoryStore(clock=clock)  # the index's entries expire on the test's clock
    _, old_cookie = logged_in_on(deployment(old, clock, owner_key="user"))
    new_store = MemoryStore(clock=clock)
    new = deployment(new_store, clock, owner_key="user", migrate_from=_source_of(old))
    replay(new, old_cookie)
    assert len(new.sessions.of("alice")) == 1


def _opcodes(app: SessionMiddleware, path: str, cookie: str) -> int:
    """Python opcodes one request runs (a count, not a time: the same on every machine)."""
    import gc
    import sys

    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        frame.f_trace_opcodes = True
        if event == "opcode":
            count += 1
        return tracer

    client = Client(app)
    client.set_cookie("session", cookie)
    environ = {"HTTP_COOKIE": f"session={cookie}", "PATH_INFO": path, "REQUEST_METHOD": "GET"}
    environ.update({"SERVER_NAME": "x", "SERVER_PORT": "80", "wsgi.url_scheme": "http"})

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        return None

    # The cyclic collector would count too, when it runs: a finalizer or a weak
    # set's callback of an object an earlier test left (a store) is no request's code.
    gc.collect()
    gc.disable()
    sys.settrace(tracer)
    try:
        b"".join(app(environ, start_response))
    finally:
        sys.settrace(None)
        gc.enable()
    return count


def test_a_request_with_our_cookie_runs_the_same_code_while_migrating(clock: FakeClock) -> None:
    plain = deployment(MemoryStore(clock=clock), clock)
    migrating = deployment(MemoryStore(clock=clock), clock, migrate_from="flask")
    counts = []
    for app in (plain, migrating):
        _, cookie = logged_in_on(app, "set")
        replay(app, cookie, "/set2")  # warm: every code path taken once
        counts.append([_opcodes(app, path, cookie) for path in ("/read", "/set2", "/read")])
    assert counts[0] == counts[1]


def test_a_source_whose_library_is_missing_fails_at_start_up_naming_the_setting(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "flask.sessions", None)  # as if Flask were not installed
    with pytest.raises(ConfigurationError) as error:
        deployment(MemoryStore(), clock, migrate_from="flask")
    assert error.value.setting == "migrate_from"
    assert "flask" in str(error.value)
