"""Concurrent requests on one session (threads; MemoryStore and a real Redis): CAS and merge.

Requests are ordered with barriers and events, never with sleeps: each racing
request loads its session, stops at its gate, and goes on when the test says.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import redis
from helpers import (
    SECRET,
    CountingStore,
    Environ,
    FakeClock,
    SetCookie,
    StartResponse,
    one_cookie,
    set_cookies,
    store_key,
    stored_data,
    stored_record,
)
from werkzeug.test import Client, TestResponse

from wsgi_session import (
    MemoryStore,
    RedisStore,
    ServerSideBackend,
    Session,
    SessionMiddleware,
    Store,
)

WAIT = 30  # seconds before a stuck gate fails the test instead of hanging it

Action = Callable[[Session], Any]


class Gate:
    """Holds a request after it loaded its session until the test opens it."""

    def __init__(self) -> None:
        self.loaded = threading.Event()
        self.go = threading.Event()

    def __call__(self) -> None:
        self.loaded.set()
        assert self.go.wait(WAIT), "gate never opened"

    def wait_loaded(self) -> None:
        assert self.loaded.wait(WAIT), "request never loaded its session"


class RaceApp:
    """``/<route>``: load the session, call the route's pause, then run its action."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[Callable[[], object] | None, Action]] = {
            "seed": (None, lambda s: s.update(seed=1, user="anon")),
            "read": (None, dict),
        }

    def add(self, name: str, action: Action, pause: Callable[[], object] | None = None) -> str:
        self.routes[name] = (pause, action)
        return f"/{name}"

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        pause, action = self.routes[environ["PATH_INFO"].strip("/")]
        session = environ["wsgi_session"]
        session.get("seed")  # load before pausing, as a slow request would
        if pause is not None:
            pause()
        result = action(session)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(result).encode()]


class Race:
    """One session, one store, and a pool of threads sending requests for it."""

    def __init__(self, inner: Store, **options: Any) -> None:
        self.sealed = bool(options.get("seal_records"))
        self.app = RaceApp()
        self.store = CountingStore(inner)
        self.middleware = SessionMiddleware(self.app, SECRET, store=self.store, **options)
        assert isinstance(self.middleware.backend, ServerSideBackend)
        self.stats = self.middleware.backend.stats
        self.pool = ThreadPoolExecutor(max_workers=64)
        self.cookie = one_cookie(Client(self.middleware).get("/seed"))

    def request(self, path: str, cookie: SetCookie | None = None) -> TestResponse:
        """One request with ``cookie`` (default: the seeded session's)."""
        value = (cookie or self.cookie).value
        return Client(self.middleware, use_cookies=False).get(
            path, headers={"Cookie": f"session={value}"}
        )

    def start(self, path: str, cookie: SetCookie | None = None) -> Future[TestResponse]:
        return self.pool.submit(self.request, path, cookie)

    def data(self, cookie: SetCookie | None = None) -> dict[str, Any] | None:
        return stored_data(self.store, (cookie or self.cookie).session_id)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(params=["memory", "redis"])
def inner(request: pytest.FixtureRequest) -> Iterable[Store]:
    """The real store under the counting one: in-process, or a real Redis server."""
    if request.param == "memory":
        yield MemoryStore()
        return
    server = request.getfixturevalue("shared_redis")
    store = RedisStore(server.url, key_prefix=f"race{uuid.uuid4().hex[:12]}:")
    yield store
    store.close()


@pytest.fixture(params=[False, True], ids=["plain", "sealed"])
def sealed(request: pytest.FixtureRequest) -> bool:
    """Records in the clear, or sealed (``seal_records=True``): the merges are the same."""
    return bool(request.param)


@pytest.fixture
def race(inner: Store, sealed: bool) -> Iterable[Race]:
    race = Race(inner, seal_records=sealed)
    yield race
    race.close()


def setter(key: str, value: Any) -> Action:
    return lambda session: session.__setitem__(key, value)


def test_fifty_concurrent_writers_all_keep_their_key(race: Race) -> None:
    everyone_loaded = threading.Barrier(50, timeout=WAIT)
    paths = [race.app.add(f"w{n}", setter(f"k{n}", n), everyone_loaded.wait) for n in range(50)]

    responses = [future.result(WAIT) for future in [race.start(path) for path in paths]]

    assert [r.status_code for r in responses] == [200] * 50
    # A write that landed first re-sends the cookie (as Flask and Django do); a
    # merged one leaves it to the write it merged into. Never another id.
    sent = [cookie for r in responses for cookie in set_cookies(r)]
    assert 1 <= len(sent) < 50
    assert {(cookie.session_id, cookie.expires_now) for cookie in sent} == {
        (race.cookie.session_id, False)
    }
    assert race.data() == {"seed": 1, "user": "anon", **{f"k{n}": n for n in range(50)}}
    raw = race.store.inner.load(store_key(race.cookie.session_id))
    assert raw is not None and raw[0].startswith(b"1s " if race.sealed else b"1 ")
    # All 50 loaded the same version, so 49 had to merge at least once.
    assert race.stats.conflicts == race.stats.merges >= 49
    assert race.stats.dropped == 0


def test_later_save_wins_for_the_same_key_only(race: Race) -> None:
    both_loaded = threading.Barrier(2, timeout=WAIT)
    second = Gate()
    first = race.start(
        race.app.add("first", lambda s: s.update(user="first", a=1), both_loaded.wait)
    )
    later = race.start(
        race.app.add(
            "later",
            lambda s: (s.update(user="later", b=2), s.pop("seed")),
            lambda: (both_loaded.wait(), second()),
        )
    )

    assert first.result(WAIT).status_code == 200
    second.go.set()
    assert later.result(WAIT).status_code == 200

    assert race.data() == {"user": "later", "a": 1, "b": 2}
    assert (race.stats.conflicts, race.stats.merges, race.stats.dropped) == (1, 1, 0)


def test_logout_racing_slow_writers_stays_logged_out(race: Race) -> None:
    writers_loaded = threading.Barrier(21, timeout=WAIT)
    logout_done = threading.Event()

    def pause() -> None:
        writers_loaded.wait()
        assert logout_done.wait(WAIT)

    writers = [race.start(race.app.add(f"w{n}", setter(f"k{n}", n), pause)) for n in range(20)]
    writers_loaded.wait()
    logout = race.request(race.app.add("logout", Session.destroy))
    logout_done.set()
    responses = [future.result(WAIT) for future in writers]

    assert one_cookie(logout).expires_now
    for response in responses:
        assert response.status_code == 200
        assert one_cookie(response).expires_now
    assert race.data() is None
    assert records(race.store.inner) == 0
    assert race.stats.dropped == 20
    assert race.request("/read").text == "{}"


def records(store: Store) -> int:
    """How many session records ``store`` holds."""
    if isinstance(store, RedisStore):
        with redis.Redis.from_url(store.where) as client:
            return len(list(client.scan_iter(match=store.key_prefix + "*")))
    assert isinstance(store, MemoryStore)
    return len(store)


def login(session: Session) -> None:
    session.regenerate()
    session["user"] = "bob"


@pytest.mark.parametrize(
    "permanent",
    [False, True],
    ids=["browser", "permanent"],
)
def test_write_after_a_concurrent_regenerate_lands_under_the_new_id(
    permanent: bool, inner: Store, sealed: bool
) -> None:
    race = Race(inner, seal_records=sealed)
    try:
        if permanent:
            race.request(race.app.add("permanent", lambda s: setattr(s, "permanent", True)))
        writer_gate = Gate()
        writer = race.start(race.app.add("cart", setter("cart", [1]), writer_gate))
        writer_gate.wait_loaded()
        logged_in = race.request(race.app.add("login", login))
        writer_gate.go.set()
        written = writer.result(WAIT)

        new = browser_cookie([logged_in, written])
        assert new.session_id != race.cookie.session_id
        assert race.data(new) == {"seed": 1, "user": "bob", "cart": [1]}
        assert race.data() is None
        assert race.request("/read").text == "{}"  # the old cookie
        assert race.stats.merges >= 1
    finally:
        race.close()


def test_regenerate_after_a_concurrent_write_keeps_the_write(race: Race) -> None:
    login_gate = Gate()
    logging_in = race.start(race.app.add("login", login, login_gate))
    login_gate.wait_loaded()
    race.request(race.app.add("cart", setter("cart", [1])))
    login_gate.go.set()
    logged_in = logging_in.result(WAIT)

    new = one_cookie(logged_in)
    assert new.session_id != race.cookie.session_id
    assert race.data(new) == {"seed": 1, "user": "bob", "cart": [1]}
    assert race.data() is None
    assert race.request("/read").text == "{}"


def test_stale_reader_racing_a_login_does_not_undo_it(inner: Store, sealed: bool) -> None:
    clock = FakeClock()
    race = Race(inner, idle_timeout=1000, refresh_interval=10, clock=clock, seal_records=sealed)
    try:
        clock.advance(60)  # the session now needs a refresh
        reader_gate = Gate()
        reader = race.start(race.app.add("slow_read", dict, reader_gate))
        reader_gate.wait_loaded()
        logged_in = race.request(race.app.add("login", login))
        reader_gate.go.set()
        read = reader.result(WAIT)

        new = browser_cookie([logged_in, read])
        assert race.data(new) == {"seed": 1, "user": "bob"}
    finally:
        race.close()


def browser_cookie(responses: list[TestResponse]) -> SetCookie:
    """The session cookie a browser holds after these responses, in this order."""
    held = None
    for response in responses:
        for cookie in set_cookies(response):
            held = None if cookie.expires_now else cookie
    assert held is not None
    return held


def test_clearing_racing_a_write_keeps_the_key_the_writer_set(race: Race) -> None:
    clearer_gate = Gate()
    clearing = race.start(race.app.add("clear", Session.clear, clearer_gate))
    clearer_gate.wait_loaded()
    written = race.request(race.app.add("cart", setter("cart", [1])))
    clearer_gate.go.set()
    cleared = clearing.result(WAIT)

    assert one_cookie(written).session_id == race.cookie.session_id  # it landed first
    # The clear removed what it had loaded; the key set after its load survives,
    # so the cookie stays: the session still holds data.
    assert race.data() == {"cart": [1]}
    assert set_cookies(cleared) == []
    assert race.request("/read").text == "{'cart': [1]}"
    assert (race.stats.conflicts, race.stats.merges) == (1, 1)


def test_a_write_follows_a_chain_of_regenerations(race: Race) -> None:
    writer_gate = Gate()
    writing = race.start(race.app.add("cart", setter("cart", [1]), writer_gate))
    writer_gate.wait_loaded()
    first_login = one_cookie(race.request(race.app.add("login", login)))
    second_login = one_cookie(race.request("/login", first_login))
    writer_gate.go.set()
    written = writing.result(WAIT)

    assert set_cookies(written) == []  # the logins' responses carry the current id
    assert race.data(second_login) == {"seed": 1, "user": "bob", "cart": [1]}
    assert race.data(first_login) is None  # still retired: a forward, not a live record
    assert race.request("/read", first_login).text == "{}"


@pytest.mark.parametrize("regenerate", [False, True], ids=["same-id", "regenerated"])
def test_a_remember_me_login_racing_a_slow_write_stays_permanent(
    regenerate: bool, inner: Store, sealed: bool
) -> None:
    race = Race(inner, seal_records=sealed)
    try:

        def remember_me(session: Session) -> None:
            if regenerate:
                session.regenerate()
            session.permanent = True
            session.idle_timeout = 30 * 24 * 3600
            session["user"] = "bob"

        writer_gate = Gate()
        writer = race.start(race.app.add("cart", setter("cart", [1]), writer_gate))
        writer_gate.wait_loaded()
        logged_in = race.request(race.app.add("remember", remember_me))
        writer_gate.go.set()
        written = writer.result(WAIT)

        cookie = browser_cookie([logged_in, written])
        assert cookie.attrs["max-age"] == str(30 * 24 * 3600)
        record = stored_record(race.store, cookie.session_id)
        assert record is not None
        # The slow writer merged its key but kept the login's flags.
        assert (record.permanent, record.idle_timeout) == (True, 30 * 24 * 3600)
        assert race.data(cookie) == {"seed": 1, "user": "bob", "cart": [1]}
        assert race.stats.merges >= 1
    finally:
        race.close()
