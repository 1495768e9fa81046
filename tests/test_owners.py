"""Per-user sessions: the owner index on every store, listing, revoking, what a request pays.

The stores are real (SQLite files, memcached, Redis, PostgreSQL started by the fixtures);
the requests go through the middleware with werkzeug's test client, one
client per browser. ``test_owners_gunicorn.py`` does the same across
gunicorn worker processes.
"""

from __future__ import annotations

import secrets
import sqlite3
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    SECRET,
    CountingIndexStore,
    CountingStore,
    FakeClock,
    one_cookie,
    session_app,
    store_key,
)
from prometheus_client import CollectorRegistry
from werkzeug.test import Client

from wsgi_session import (
    CookieStore,
    MemcachedStore,
    MemoryStore,
    OwnerIndex,
    PostgresStore,
    PrometheusMetrics,
    Session,
    SessionMiddleware,
    SessionsUnsupported,
    SQLiteStore,
    Store,
)
from wsgi_session.config import store_from_url
from wsgi_session.record import Record

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the benchmarks package
# Counted by the stores themselves: the commands Redis ran, the statements SQLite ran.
from benchmarks.roundtrips import redis_counting, sqlite_counting

OWNER_KEY = "user"


class Browser(Client):
    """A test client that sends a user agent and comes from ``address``."""

    def __init__(self, app: Any, agent: str, address: str) -> None:
        super().__init__(app)
        self.environ = {"HTTP_USER_AGENT": agent, "REMOTE_ADDR": address}

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("environ_base", self.environ)
        return super().open(*args, **kwargs)


class Site:
    """A middleware with an owner key, its routes, and a client per browser."""

    def __init__(self, store: Any, owner: str, **options: Any) -> None:
        self.owner = owner
        self.store = store
        routes: dict[str, Callable[[Session], Any]] = {
            "login": self.login,
            "login-plain": lambda session: session.__setitem__(OWNER_KEY, owner),
            "logout": lambda session: session.destroy(),
            "forget-user": lambda session: session.pop(OWNER_KEY, None),
            "cart": lambda session: session.__setitem__("cart", secrets.token_hex(4)),
            "regenerate": lambda session: session.regenerate(),
            "read": lambda session: dict(session),
            "list": lambda session: [
                (info.current, info.user_agent, info.address)
                for info in self.middleware.sessions.of(owner, current=session)
            ],
            "revoke-others": lambda session: self.middleware.sessions.revoke(owner, keep=session),
        }
        options.setdefault("owner_key", OWNER_KEY)
        self.middleware = SessionMiddleware(session_app(routes), SECRET, store=store, **options)

    def login(self, session: Session) -> None:
        session.regenerate()
        session[OWNER_KEY] = self.owner

    def browser(self, agent: str = "test-browser/1.0", address: str = "203.0.113.77") -> Browser:
        return Browser(self.middleware, agent, address)

    def logged_in(self, count: int) -> list[Browser]:
        browsers = [self.browser(f"browser-{index}") for index in range(count)]
        for browser in browsers:
            assert browser.get("/login").status_code == 200
        return browsers


def read(browser: Client) -> dict[str, Any]:
    response = browser.get("/read")
    assert response.status_code == 200
    return eval(response.text)  # noqa: S307  # the repr of a dict of plain values, made here


@pytest.fixture(params=["memory", "sqlite", "memcached", "redis", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A real store of each kind that keeps an owner index."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        made: Any = SQLiteStore(tmp_path / "sessions.db")
    elif request.param == "memcached":
        made = MemcachedStore(request.getfixturevalue("shared_memcached").address)
    elif request.param == "redis":
        made = store_from_url(request.getfixturevalue("shared_redis").url)
    else:
        server = request.getfixturevalue("shared_postgres")
        made = PostgresStore(server.url, table=request.getfixturevalue("table"))
    yield made
    made.close()


@pytest.fixture
def owner() -> str:
    """An owner of this test alone (the memcached and Redis servers are shared)."""
    return f"user-{secrets.token_hex(4)}"


def test_every_server_side_store_keeps_an_owner_index(store: Any) -> None:
    assert isinstance(store, OwnerIndex)


def test_lists_the_sessions_of_logins_from_several_browsers(store: Any, owner: str) -> None:
    site = Site(store, owner, record_client=True)
    first, second = site.browser("Firefox/128", "198.51.100.23"), site.browser("Safari/17")
    for browser in (first, second):
        assert browser.get("/login").status_code == 200
    stranger = Site(store, "someone-else").browser()
    stranger.get("/login")

    listed = eval(first.get("/list").text)  # noqa: S307
    assert sorted(listed) == [
        (False, "Safari/17", "203.0.113.0/24"),
        (True, "Firefox/128", "198.51.100.0/24"),
    ]
    infos = site.middleware.sessions.of(owner)
    assert len(infos) == 2
    for info in infos:
        assert info.created <= info.last_seen < info.expires
        assert not info.current


def test_the_owner_is_never_in_the_store_in_clear(tmp_path: Path, owner: str) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    site = Site(store, owner, record_client=True)
    site.browser().get("/login")
    rows = sqlite3.connect(tmp_path / "sessions.db").execute(
        "SELECT data, owner FROM wsgi_sessions"
    )
    ((data, owner_column),) = rows.fetchall()
    assert owner.encode() not in bytes(owner_column.encode()) + data.replace(
        b'"' + owner.encode() + b'"', b""
    )  # only the session data itself holds it (as the application put it there)
    assert len(owner_column) == 64  # an HMAC-SHA256, hex
    assert b"203.0.113.77" not in data and b"203.0.113.0" not in data  # encoded, and coarse


def test_revoke_ends_every_other_session_at_once(store: Any, owner: str) -> None:
    site = Site(store, owner)
    me, *others = site.logged_in(3)
    assert me.get("/revoke-others").text == "2"

    assert read(me) == {OWNER_KEY: owner}
    for browser in others:
        response = browser.get("/cart")  # a write with a revoked cookie starts over
        assert read(browser).get(OWNER_KEY) is None
        assert response.status_code == 200
    listed = site.middleware.sessions.of(owner)
    assert len(listed) == 1


def test_revoke_one_by_its_handle(store: Any, owner: str) -> None:
    site = Site(store, owner, record_client=True)
    first, second = site.logged_in(2)
    handles = {info.user_agent: info.handle for info in site.middleware.sessions.of(owner)}
    assert site.middleware.sessions.revoke_one(handles["browser-1"], "someone-else") is False
    assert site.middleware.sessions.revoke_one(handles["browser-1"], owner) is True
    assert read(second) == {}
    assert read(first) == {OWNER_KEY: owner}
    assert [info.user_agent for info in site.middleware.sessions.of(owner)] == ["browser-0"]
    assert site.middleware.sessions.revoke_one(handles["browser-1"], owner) is False
    for forged in ("forged.handle", "", ".", "nodot", "\u00e9.\u00e9", handles["browser-0"] + "x"):
        assert site.middleware.sessions.revoke_one(forged, owner) is False
    assert read(first) == {OWNER_KEY: owner}


def test_a_handle_stops_working_once_its_session_belongs_to_someone_else(
    store: Any, owner: str
) -> None:
    """The owner key removed, then another user logged in under the same id."""
    site = Site(store, owner)
    (browser,) = site.logged_in(1)
    (listed,) = site.middleware.sessions.of(owner)
    browser.get("/cart")
    browser.get("/forget-user")  # the user is gone, the session (its cart) stays
    cookie = browser.get_cookie("session")
    assert cookie is not None
    other = f"other-{owner}"
    taken = Client(Site(store, other).middleware)
    taken.set_cookie("session", cookie.value)
    taken.get("/login-plain")  # another user, same id: no regeneration
    assert read(taken).get(OWNER_KEY) == other

    assert site.middleware.sessions.revoke_one(listed.handle, owner) is False
    assert site.middleware.sessions.revoke_one(listed.handle, other) is False
    assert read(taken).get(OWNER_KEY) == other
    (theirs,) = site.middleware.sessions.of(other)
    assert site.middleware.sessions.revoke_one(theirs.handle, owner) is False  # not for owner
    assert site.middleware.sessions.revoke_one(theirs.handle, other) is True
    assert read(taken).get(OWNER_KEY) is None


def test_a_handle_is_not_a_cookie(owner: str) -> None:
    site = Site(MemoryStore(), owner)
    site.logged_in(1)
    (info,) = site.middleware.sessions.of(owner)
    intruder = site.browser()
    intruder.set_cookie("session", info.handle)
    assert read(intruder) == {}


def test_logout_and_forgetting_the_user_drop_the_session_from_the_list(
    store: Any, owner: str
) -> None:
    site = Site(store, owner)
    leaving, forgetting, staying = site.logged_in(3)
    leaving.get("/logout")
    forgetting.get("/forget-user")
    assert [info.current for info in site.middleware.sessions.of(owner)] == [False]
    assert read(staying) == {OWNER_KEY: owner}


def test_a_login_without_a_new_id_and_a_regeneration_keep_the_index(store: Any, owner: str) -> None:
    site = Site(store, owner)
    browser = site.browser()
    browser.get("/cart")
    browser.get("/login-plain")  # Flask-Login's login_user: the same id
    assert len(site.middleware.sessions.of(owner)) == 1
    browser.get("/regenerate")
    listed = eval(browser.get("/list").text)  # noqa: S307
    assert [current for current, _, _ in listed] == [True]


def test_an_ordinary_request_makes_no_extra_store_call(owner: str) -> None:
    """Same requests, same store, with and without owners: the same calls, but at login."""
    calls = {}
    for owner_key in (OWNER_KEY, None):
        store = CountingIndexStore()
        site = Site(store, owner, owner_key=owner_key, refresh_interval=0)
        browser = site.browser()
        browser.get("/login")
        login = dict(store.calls)
        store.calls.clear()
        for path in ("/read", "/cart", "/cart", "/read", "/regenerate"):
            assert browser.get(path).status_code == 200
        calls[owner_key] = (login, dict(store.calls))
    (owned_login, owned_after), (plain_login, plain_after) = calls[OWNER_KEY], calls[None]
    assert owned_login == {**plain_login, "index_owner": 1}
    # A regeneration moves the entry: one index and one unindex call; nothing else.
    assert owned_after == {**plain_after, "index_owner": 1, "unindex_owner": 1}
    # refresh_interval=0: each read rewrites its record too; a regeneration saves twice.
    assert plain_after == {"load": 5, "save": 6}


def test_a_logout_costs_one_end_one_delete_and_one_unindex_call(owner: str) -> None:
    store = CountingIndexStore()
    site = Site(store, owner)
    browser = site.browser()
    browser.get("/login")
    store.calls.clear()
    browser.get("/logout")
    # The save: the record marked ended by compare-and-set, so that a login racing
    # the logout finds it ended (docs/concurrency.md), then deleted.
    assert dict(store.calls) == {"load": 1, "save": 1, "delete": 1, "unindex_owner": 1}


@pytest.mark.parametrize("metered", [False, True], ids=["", "metered"])
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_login_and_a_logout_with_the_index_cost_no_extra_round_trip(
    kind: str, metered: bool, request: pytest.FixtureRequest, tmp_path: Path, owner: str
) -> None:
    """Counted by the store itself: the commands Redis ran (MONITOR), SQLite's statements.

    ``metered``: with metrics on, whose timing wrapper keeps the store's capabilities.
    """
    options: dict[str, Any] = {}
    if metered:
        options["metrics"] = PrometheusMetrics(CollectorRegistry(), interval=3600)
    counts: dict[str | None, list[int]] = {}
    for owner_key in (OWNER_KEY, None):
        if kind == "sqlite":
            store: Any = SQLiteStore(tmp_path / f"sessions-{owner_key}.db")
            counting: Callable[[], Any] = partial(sqlite_counting, store)
        else:
            server = request.getfixturevalue("shared_redis")
            store = store_from_url(server.url)
            counting = partial(redis_counting, server.address)
        site = Site(store, owner, owner_key=owner_key, **options)
        browser = site.browser()
        for _ in range(2):  # an anonymous session (its update loads Redis's script once)
            browser.get("/cart")
        newcomer = site.browser()  # logs in with no session yet
        made = []
        steps = ((browser, "/login"), (browser, "/logout"), (newcomer, "/login-plain"))
        for visitor, path in steps:
            with counting() as counted:
                assert visitor.get(path).status_code == 200
            made.append(sum(counted.values()))
        counts[owner_key] = made
        if owner_key is not None:  # the index was kept all the same
            listed = site.middleware.sessions.of(owner)
            assert len(listed) == 1  # the newcomer's; the logged-out one is gone
            (key,) = store.owned(site.middleware.sessions.tracking.hasher.digest(owner))
            assert key == store_key(one_cookie(newcomer.get("/cart")).session_id)
        store.close()
    # load + create + retire; load + the ended marker + delete; create: the index rides
    # in those.
    assert counts[OWNER_KEY] == counts[None] == [3, 3, 1]


def test_a_request_in_flight_on_a_revoked_session_saves_nothing(store: Any, owner: str) -> None:
    site = Site(store, owner)
    me, victim = site.logged_in(2)
    cookie = victim.get_cookie("session")
    assert cookie is not None

    def in_flight(action: Callable[[Session], Any]) -> Any:
        """A request of the victim that loaded its session before the revocation."""

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            session: Session = environ["wsgi_session"]
            session.get(OWNER_KEY)  # loaded now
            assert me.get("/revoke-others").text == "1"  # meanwhile, on another worker
            action(session)
            start_response("200 OK", [])
            return [b""]

        middleware = SessionMiddleware(app, SECRET, store=store, owner_key=OWNER_KEY)
        client = Client(middleware)
        client.set_cookie("session", cookie.value)
        return client.get("/")

    for action in (
        lambda session: session.__setitem__("cart", "late"),  # an update
        lambda session: session.regenerate(),  # a login in flight: must not resurrect it
        lambda session: (session.regenerate(), session.__setitem__("cart", "late")),
    ):
        response = in_flight(action)
        assert one_cookie(response).expires_now, response.headers
        assert read(victim) == {}
        assert [info.current for info in site.middleware.sessions.of(owner)] == [False]
        # Log the victim in again for the next round.
        assert victim.get("/login").status_code == 200
        cookie = victim.get_cookie("session")
        assert cookie is not None


def test_expired_sessions_drop_out_of_the_list_and_the_index(tmp_path: Path, owner: str) -> None:
    for store in (MemoryStore, SQLiteStore):
        clock = FakeClock()
        made: Any = (
            MemoryStore(clock=clock)
            if store is MemoryStore
            else SQLiteStore(tmp_path / f"{owner}.db", clock=clock)
        )
        site = Site(made, owner, idle_timeout=60, clock=clock)
        site.logged_in(2)
        assert len(site.middleware.sessions.of(owner)) == 2
        clock.advance(61)
        assert site.middleware.sessions.of(owner) == []
        digest = site.middleware.sessions.tracking.hasher.digest(owner)  # type: ignore[attr-defined]
        clock.advance(200)  # past the entries' own time too
        assert made.owned(digest) == []


def test_a_refreshed_session_stays_listed_past_its_first_lifetime(owner: str) -> None:
    clock = FakeClock()
    store = CountingIndexStore(MemoryStore(clock=clock))
    site = Site(store, owner, idle_timeout=60, refresh_interval=30, clock=clock)
    (browser,) = site.logged_in(1)
    for _ in range(10):  # 10 minutes of use, 10 times the idle timeout
        clock.advance(59)
        assert read(browser) == {OWNER_KEY: owner}
    assert len(site.middleware.sessions.of(owner)) == 1
    # Re-indexed about once per two lifetimes, not on every refresh.
    assert store.calls["index_owner"] <= 1 + 10 // 2


def test_the_redis_index_is_one_sorted_set_per_owner_with_a_ttl(
    shared_redis: Any, owner: str
) -> None:
    store = store_from_url(shared_redis.url)
    site = Site(store, owner)
    site.logged_in(2)
    client = shared_redis.client()
    digest = site.middleware.sessions.tracking.hasher.digest(owner)  # type: ignore[attr-defined]
    key = f"owner:{{{digest}}}"
    assert client.zcard(key) == 2
    assert client.type(key) == b"zset"
    assert client.ttl(key) > 0  # goes with its last entry


def test_old_sqlite_tables_get_the_owner_column_in_place(tmp_path: Path, owner: str) -> None:
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.executescript(
        "CREATE TABLE wsgi_sessions (key TEXT PRIMARY KEY, data BLOB NOT NULL, "
        "version INTEGER NOT NULL, expires REAL NOT NULL);"
    )
    connection.execute(
        "INSERT INTO wsgi_sessions VALUES ('k', ?, 1, 1e12)", (b'1 1 1 0 0 {"a":1}',)
    )
    connection.commit()
    connection.close()
    store = SQLiteStore(path)
    assert store.load("k") == (b'1 1 1 0 0 {"a":1}', 1)  # old rows and old records still read
    site = Site(store, owner)
    site.logged_in(1)
    assert len(site.middleware.sessions.of(owner)) == 1
    store.close()


def test_records_of_sessions_without_an_owner_keep_format_1() -> None:
    store = CountingStore()
    site = Site(store, "x", owner_key=None)
    browser = site.browser()
    browser.get("/login")
    cookie = one_cookie(browser.get("/regenerate"))
    found = store.inner.load(store_key(cookie.session_id))
    assert found is not None and found[0].startswith(b"1 ")
    owned = Record.decode(b"2 1 2 0 0 " + b"ab" * 32 + b' 99 - {"user":"x"}')
    assert owned is not None and owned.owner is not None and owned.owner.indexed_until == 99
    assert Record.decode(owned.encode()) == owned


def test_the_cookie_store_says_why_it_cannot_list_sessions() -> None:
    middleware = SessionMiddleware(
        session_app({}), SECRET, store=CookieStore(), owner_key=OWNER_KEY
    )
    with pytest.raises(SessionsUnsupported, match="cookie store keeps each session"):
        middleware.sessions.of("alice")
    with pytest.raises(SessionsUnsupported, match="server-side store"):
        middleware.sessions.revoke("alice")


def test_a_store_without_an_owner_index_still_keeps_sessions(owner: str) -> None:
    store = CountingStore()  # load/save/delete only
    assert isinstance(store, Store) and not isinstance(store, OwnerIndex)
    site = Site(store, owner)
    (browser,) = site.logged_in(1)
    assert read(browser) == {OWNER_KEY: owner}
    with pytest.raises(SessionsUnsupported, match="CountingStore keeps no owner index"):
        site.middleware.sessions.of(owner)


def test_without_an_owner_key_listing_says_so() -> None:
    middleware = SessionMiddleware(session_app({}), SECRET, store=MemoryStore())
    with pytest.raises(SessionsUnsupported, match="no owner_key"):
        middleware.sessions.of("alice")


def test_revoke_never_ends_a_session_a_stale_entry_points_at(owner: str) -> None:
    """An entry left behind (a process killed between two calls) names someone else's session."""
    store = MemoryStore()
    site, other = Site(store, owner), Site(store, "someone-else")
    (bystander,) = other.logged_in(1)
    cookie = bystander.get_cookie("session")
    assert cookie is not None
    digest = site.middleware.sessions.tracking.hasher.digest(owner)  # type: ignore[attr-defined]
    store.index_owner(digest, store_key(cookie.value.split(".", 1)[0]), 2**40)
    assert site.middleware.sessions.revoke(owner) == 0
    assert read(bystander) == {OWNER_KEY: "someone-else"}
    assert site.middleware.sessions.of(owner) == []
