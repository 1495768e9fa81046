"""Concurrent requests on one session (threads; MemoryStore and a real Redis): CAS and merge.

Requests are ordered with barriers and events, never with sleeps: each racing
request loads its session, stops at its gate, and goes on when the test says.
The logout-and-login races and the owner checks run on every server-side store
(SQLite, memcached and Redis, real servers from the fixtures).
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import (
    SECRET,
    CountingIndexStore,
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
    MemcachedStore,
    MemoryStore,
    RedisStore,
    ServerSideBackend,
    Session,
    SessionMiddleware,
    SQLiteStore,
    Store,
)
from wsgi_session.record import ENDED

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
        self.store = CountingIndexStore(inner)
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


# -- logouts and logins racing, owners across a forward: on every server-side store --


ACCOUNT = "account"  # the owner key of these races ("user" is the seeded session's data)


@pytest.fixture(params=["memory", "sqlite", "memcached", "redis"])
def each_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterable[Store]:
    """A real store of each server-side kind, all keeping an owner index."""
    made: Any
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        made = SQLiteStore(tmp_path / "sessions.db")
    elif request.param == "memcached":
        server = request.getfixturevalue("shared_memcached")
        made = MemcachedStore(server.address, key_prefix=f"race{uuid.uuid4().hex[:12]}:")
    else:
        server = request.getfixturevalue("shared_redis")
        made = RedisStore(server.url, key_prefix=f"race{uuid.uuid4().hex[:12]}:")
    yield made
    made.close()


def login_as(name: str) -> Action:
    def login(session: Session) -> None:
        session.regenerate()
        session[ACCOUNT] = name

    return login


class OwnedRace(Race):
    """A race whose sessions have owners (``owner_key``), for one user of this test alone."""

    def __init__(self, inner: Store, **options: Any) -> None:
        super().__init__(inner, owner_key=ACCOUNT, **options)
        self.user = f"user-{secrets.token_hex(4)}"
        self.login = self.app.add("login", login_as(self.user))
        self.logout = self.app.add("logout", Session.destroy)

    def listed(self) -> int:
        return len(self.middleware.sessions.of(self.user))

    def indexed(self) -> list[str]:
        """The store's owner index entries for the user (expired records' entries included)."""
        digest = self.middleware.sessions.tracking.hasher.digest(self.user)  # type: ignore[attr-defined]
        entries: list[str] = self.store.inner.owned(digest)
        return entries


def test_a_logout_that_loaded_before_a_login_finished_ends_the_logged_in_session(
    each_store: Store, sealed: bool
) -> None:
    """The login finishes first: the logout finds a forward, and ends where it leads."""
    race = OwnedRace(each_store, seal_records=sealed)
    try:
        signed_in = one_cookie(race.request(race.login))
        logout_gate = Gate()
        logging_out = race.start(
            race.app.add("slow-logout", Session.destroy, logout_gate), signed_in
        )
        logout_gate.wait_loaded()
        relogin = race.request(race.login, signed_in)  # e.g. a second tab: the id moves on
        moved_to = one_cookie(relogin)
        assert race.data(moved_to) is not None and race.listed() == 1
        logout_gate.go.set()
        logged_out = logging_out.result(WAIT)

        assert logged_out.status_code == 200 and one_cookie(logged_out).expires_now
        assert race.data(moved_to) is None and race.data(signed_in) is None
        assert race.listed() == 0 and race.indexed() == []
        # Whichever response reaches the browser last, the user is logged out.
        assert race.request("/read", moved_to).text == "{}"
        assert race.request("/read", signed_in).text == "{}"
    finally:
        race.close()


def test_a_login_that_loaded_before_a_logout_finished_does_not_revive_it(
    each_store: Store, sealed: bool
) -> None:
    """The other order: the logout finishes first; the login's new record goes too."""
    race = OwnedRace(each_store, seal_records=sealed)
    try:
        signed_in = one_cookie(race.request(race.login))
        login_gate = Gate()
        logging_in = race.start(
            race.app.add("slow-login", login_as(race.user), login_gate), signed_in
        )
        login_gate.wait_loaded()
        logged_out = race.request(race.logout, signed_in)
        login_gate.go.set()
        logged_in = logging_in.result(WAIT)

        assert one_cookie(logged_out).expires_now and one_cookie(logged_in).expires_now
        assert race.listed() == 0 and race.indexed() == []
        assert race.request("/read", signed_in).text == "{}"
    finally:
        race.close()


class HeldEnd(CountingIndexStore):
    """The real store, holding a logout between its two writes (the end, then the delete).

    Not a fake: every call reaches the real store; the gate only orders them.
    """

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.gate = Gate()
        self.armed = True

    def save(self, key: str, data: bytes, ttl: int, version: Any = None) -> bool:
        saved = super().save(key, data, ttl, version)
        if saved and data == ENDED and self.armed:
            self.armed = False
            self.gate()
        return saved


def test_a_login_retiring_a_record_a_logout_is_ending_deletes_its_new_record(
    each_store: Store, sealed: bool
) -> None:
    """The narrowest order: the login retires the record between the logout's two writes."""
    race = OwnedRace(each_store, seal_records=sealed)
    held = HeldEnd(each_store)
    race.store = held
    race.middleware = SessionMiddleware(
        race.app, SECRET, store=held, owner_key=ACCOUNT, seal_records=sealed
    )
    try:
        signed_in = one_cookie(race.request(race.login))
        login_gate = Gate()
        logging_in = race.start(
            race.app.add("slow-login", login_as(race.user), login_gate), signed_in
        )
        login_gate.wait_loaded()
        logging_out = race.start(race.logout, signed_in)
        held.gate.wait_loaded()  # the record is ENDED, not deleted yet
        login_gate.go.set()
        logged_in = logging_in.result(WAIT)  # finds the record ended: its own goes too
        held.gate.go.set()
        logged_out = logging_out.result(WAIT)

        assert one_cookie(logged_out).expires_now and one_cookie(logged_in).expires_now
        assert race.listed() == 0 and race.indexed() == []
        assert race.request("/read", signed_in).text == "{}"
    finally:
        race.close()


def test_a_request_from_before_a_login_cannot_write_into_the_logged_in_session(
    each_store: Store, sealed: bool
) -> None:
    """An id planted before a login: a slow request holding it saves after the login."""
    race = OwnedRace(each_store, seal_records=sealed)
    try:
        attacker_gate = Gate()
        attack = race.start(
            race.app.add("plant", setter("next", "https://attacker.example/"), attacker_gate)
        )
        attacker_gate.wait_loaded()
        victim = race.request(race.login)  # the victim logs in on the planted session
        attacker_gate.go.set()
        attacked = attack.result(WAIT)

        logged_in = one_cookie(victim)
        assert attacked.status_code == 200
        assert set_cookies(attacked) == []  # the victim's browser keeps its login
        assert race.data(logged_in) == {"seed": 1, "user": "anon", ACCOUNT: race.user}
        assert race.request("/read", logged_in).text == repr(
            {"seed": 1, "user": "anon", ACCOUNT: race.user}
        )
        assert race.stats.dropped == 1 and race.stats.merges == 0
    finally:
        race.close()


def test_a_request_from_before_a_regeneration_by_the_same_owner_still_merges(
    each_store: Store, sealed: bool
) -> None:
    race = OwnedRace(each_store, seal_records=sealed)
    try:
        signed_in = one_cookie(race.request(race.login))
        writer_gate = Gate()
        writing = race.start(race.app.add("cart", setter("cart", [1]), writer_gate), signed_in)
        writer_gate.wait_loaded()
        again = one_cookie(race.request(race.login, signed_in))  # same owner, new id
        writer_gate.go.set()
        assert writing.result(WAIT).status_code == 200

        assert race.data(again) == {"seed": 1, "user": "anon", ACCOUNT: race.user, "cart": [1]}
        assert race.stats.dropped == 0
    finally:
        race.close()


def test_a_key_rotation_between_a_load_and_a_regeneration_still_merges_for_the_same_owner(
    sealed: bool,
) -> None:
    """The owner's hash changes with the secret: the owner is still the same."""
    race = OwnedRace(MemoryStore(), seal_records=sealed)
    try:
        signed_in = one_cookie(race.request(race.login))  # hashed under SECRET
        race.middleware = SessionMiddleware(
            race.app,
            "a-new-secret-0123456789abcdef0123456789abcdef",
            fallback_keys=[SECRET],
            store=race.store,
            owner_key=ACCOUNT,
            seal_records=sealed,
        )
        writer_gate = Gate()
        writing = race.start(race.app.add("cart", setter("cart", [1]), writer_gate), signed_in)
        writer_gate.wait_loaded()
        again = one_cookie(race.request(race.login, signed_in))  # hashed under the new key
        writer_gate.go.set()
        assert writing.result(WAIT).status_code == 200

        backend = race.middleware.backend
        assert isinstance(backend, ServerSideBackend)
        record = backend.slots.of(again.session_id).decode(
            race.store.inner.load(store_key(again.session_id))[0]
        )
        assert record is not None and record.owner is not None
        assert "cart" in record.text and race.stats.dropped == 0
    finally:
        race.close()
