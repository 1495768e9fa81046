"""Sealed records (``seal_records=True``) on real memcached, Redis, SQLite and PostgreSQL.

What a stolen dump of the store holds (every key and value, read with the
server's own client), what a record edited in the store or moved to another
key does, and that merges, regenerate, secret rotation and switching sealing
on and off keep every session's data.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from database_servers import PostgresServer
from helpers import (
    ROUTES,
    SECRET,
    FakeClock,
    SetCookie,
    calls_to,
    one_cookie,
    record_lock,
    session_app,
    set_cookies,
    store_key,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memcached_server import MemcachedServer
from redis_server import RedisServer
from werkzeug.test import Client

from wsgi_session import (
    ConfigurationError,
    CookieStore,
    MemcachedStore,
    MemoryStore,
    PostgresStore,
    RedisStore,
    ServerSideBackend,
    Session,
    SessionMiddleware,
    Store,
    crypto,
    sealing,
)
from wsgi_session.config import from_env
from wsgi_session.cookies import KeyRing
from wsgi_session.record import Record
from wsgi_session.sealing import RecordSealer

OLD_SECRET = "old-secret-0123456789abcdef0123456789abcdef"
# What the application stores: none of it may appear in the store, nor any key name.
EMAIL = "alice@example.com"
CSRF = "csrf-9f86d081884c7d659a2feaa0c55ad015"
CARD = "card-4242-4242-4242-4242"
NOTE = "remember the milk"
STORED = [EMAIL, CSRF, CARD, NOTE, "email", "csrf", "card", "note"]


def log_in(session: Session) -> None:
    session.regenerate()
    session.update(email=EMAIL, csrf=CSRF)


SEALED_ROUTES = {
    **ROUTES,
    "card": lambda session: session.update(card=CARD),
    "login": log_in,
    "note": lambda session: session.__setitem__("note", NOTE),
}

Dump = Callable[[], dict[bytes, bytes]]


class Subject:
    """A store on a real server, and a way to dump all of it as a thief would."""

    def __init__(self, store: Store, dump: Dump) -> None:
        self.store = store
        self.dump = dump

    def middleware(self, secret_key: str = SECRET, **options: Any) -> SessionMiddleware:
        options.setdefault("seal_records", True)
        return SessionMiddleware(
            session_app(SEALED_ROUTES), secret_key, store=self.store, **options
        )

    def client(self, secret_key: str = SECRET, **options: Any) -> Client:
        return Client(self.middleware(secret_key, **options))

    def raw(self, session_id: str) -> bytes:
        found = self.store.load(store_key(session_id))
        assert found is not None
        return found[0]

    def replace(self, session_id: str, data: bytes) -> None:
        """Overwrite the record in the store, as whoever holds the store can."""
        key = store_key(session_id)
        found = self.store.load(key)
        assert found is not None
        assert self.store.save(key, data, 3600, found[1])


def memcached_dump(server: MemcachedServer) -> Dump:
    def dump() -> dict[bytes, bytes]:
        with server.client() as client:
            # "hash" walks the hash table, every item; "all" walks the LRUs and
            # now and then missed items written a moment before.
            listing = client.raw_command(b"lru_crawler metadump hash", b"END\r\n")
            keys = [
                unquote_to_bytes(line.split(b" ", 1)[0][len(b"key=") :].decode("ascii"))
                for line in listing.splitlines()
                if line.startswith(b"key=")
            ]
            return {key: client.get(key) for key in keys}

    return dump


def redis_dump(server: RedisServer) -> Dump:
    def dump() -> dict[bytes, bytes]:
        with server.client() as client:
            values = {}
            for key in client.keys("*"):
                if client.type(key) == b"zset":  # an owner's index: members and scores
                    members = client.zrange(key, 0, -1, withscores=True)
                    values[key] = b" ".join(b"%s:%d" % (m, score) for m, score in members)
                else:
                    assert client.type(key) == b"string", key
                    values[key] = client.get(key)
            return values

    return dump


def sqlite_dump(path: Path) -> Dump:
    def dump() -> dict[bytes, bytes]:
        with sqlite3.connect(path) as db:
            listing = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = [name for (name,) in listing]
            values = {}
            for table in tables:
                for row in db.execute(f"SELECT * FROM {table}"):  # noqa: S608 (the file's own)
                    values[f"{table}:{row[0]}".encode()] = b" ".join(
                        value if isinstance(value, bytes) else str(value).encode()
                        for value in row[1:]
                    )
            return values

    return dump


def postgres_dump(server: PostgresServer, table: str) -> Dump:
    def dump() -> dict[bytes, bytes]:
        values = {}
        for row in server.query(f'SELECT * FROM "{table}"'):  # noqa: S608 (the test's own)
            values[f"{table}:{row[0]}".encode()] = b" ".join(
                bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()
                for value in row[1:]
            )
        return values

    return dump


@pytest.fixture(params=["memcached", "redis", "sqlite", "postgres"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    """A store of this test's own on a real server (so its dump holds this test's records)."""
    if request.param == "memcached":
        server: MemcachedServer = request.getfixturevalue("memcached_server")
        yield Subject(MemcachedStore(server.address), memcached_dump(server))
    elif request.param == "redis":
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisStore(redis_server.url)
        yield Subject(store, redis_dump(redis_server))
        store.close()
    elif request.param == "postgres":
        # The server is shared; the test's table is its own, and all a thief gets here.
        postgres_server: PostgresServer = request.getfixturevalue("shared_postgres")
        table = request.getfixturevalue("table")
        postgres = PostgresStore(postgres_server.url, table=table)
        yield Subject(postgres, postgres_dump(postgres_server, table))
        postgres.close()
    else:
        from wsgi_session.stores.sqlite import SQLiteStore

        sqlite = SQLiteStore(tmp_path / "sessions.sqlite3")
        yield Subject(sqlite, sqlite_dump(tmp_path / "sessions.sqlite3"))
        sqlite.close()


def visit(client: Client, *paths: str) -> list[SetCookie]:
    """Request ``paths`` in turn; every session cookie the client was sent."""
    cookies = []
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, response.text
        cookies.extend(set_cookies(response))
    return cookies


def read(client: Client) -> str:
    response = client.get("/read")
    assert response.status_code == 200
    return response.text


def assert_dropped(client: Client, caplog: pytest.LogCaptureFixture, warning: str) -> None:
    """The client's record is dropped: a fresh session, and ``warning`` logged."""
    with caplog.at_level(logging.WARNING, logger="wsgi_session"):
        assert read(client) == "{}"
    assert warning in caplog.text


# -- a stolen dump --------------------------------------------------------------


def test_a_dump_of_the_store_reveals_no_data_and_opens_no_record(subject: Subject) -> None:
    cookies: list[SetCookie] = []
    pairs: list[tuple[SetCookie, SetCookie]] = []
    for _ in range(3):
        # A visitor, then a login (its old record becomes a forward), then more data.
        visited = visit(subject.client(), "/card", "/login", "/note")
        cookies += visited
        pairs.append((visited[0], visited[-1]))  # the first id, and the one after login
    ids = {cookie.session_id for cookie in cookies}
    assert len(ids) == 6  # two ids per visitor: before and after the login

    dump = subject.dump()

    assert len(dump) == 6, dump  # three live records, three forwards
    everything = b"\n".join(key + b"\n" + value for key, value in dump.items())
    for text in [*STORED, *ids, *(cookie.value for cookie in cookies)]:
        assert text.encode() not in everything, text
    records = [value for value in dump.values() if b"1s " in value]
    assert len(records) == 6
    # Whoever holds the dump, and even the server secret, but no cookie: nothing
    # in the dump opens a record (keys, values, or their parts as ids).
    for raw in records:
        for key in dump:
            candidate = key.decode("ascii", "replace").rsplit(":", 1)[-1]
            assert Record.decode(raw[raw.index(b"1s ") :], record_lock(candidate)) is None
    # The cookie does: each one opens its own session (the ids before login are retired).
    for before, after in pairs:
        assert read(cookie_client(subject, before)) == "{}"
        assert NOTE in read(cookie_client(subject, after))


def cookie_client(subject: Subject, cookie: SetCookie, **options: Any) -> Client:
    client = subject.client(**options)
    client.set_cookie("session", cookie.value)
    return client


# -- edited, moved ----------------------------------------------------------------


def tampered_header(raw: bytes) -> bytes:
    """The record with its permanent flag set: a longer life, if the header were not sealed."""
    fields = raw.split(b" ", 5)
    fields[3] = b"1"
    return b" ".join(fields)


def tampered_data(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 0x01])


@pytest.mark.parametrize("tamper", [tampered_header, tampered_data], ids=["header", "data"])
def test_a_record_edited_in_the_store_is_dropped_with_a_warning(
    subject: Subject, tamper: Callable[[bytes], bytes], caplog: pytest.LogCaptureFixture
) -> None:
    client = subject.client()
    (cookie,) = visit(client, "/login")
    subject.replace(cookie.session_id, tamper(subject.raw(cookie.session_id)))

    assert_dropped(client, caplog, "sealed session record dropped")


def test_a_record_moved_to_another_sessions_key_is_dropped(
    subject: Subject, caplog: pytest.LogCaptureFixture
) -> None:
    victim, thief = subject.client(), subject.client()
    (victims,) = visit(victim, "/login")
    (thiefs,) = visit(thief, "/note")
    # The thief holds the store and their own cookie: they copy the victim's record
    # under their own key.
    subject.replace(thiefs.session_id, subject.raw(victims.session_id))

    with caplog.at_level(logging.WARNING, logger="wsgi_session"):
        assert read(thief) == "{}"
    assert "sealed session record dropped" in caplog.text
    assert EMAIL in read(victim)


# -- merges, regenerate --------------------------------------------------------------


def opened(backend: ServerSideBackend, cookie: str) -> Session:
    session = Session(lambda: backend.open(cookie))
    assert not session.new
    return session


def test_concurrent_writes_merge_into_the_sealed_record(subject: Subject) -> None:
    middleware = subject.middleware()
    backend = middleware.backend
    assert isinstance(backend, ServerSideBackend)
    (cookie,) = visit(Client(middleware), "/login")
    first, second = opened(backend, cookie.value), opened(backend, cookie.value)

    first["card"] = CARD
    backend.commit(first)
    second["note"] = NOTE
    backend.commit(second)  # conflicts: merges into the record the first one sealed

    assert backend.stats.merges == 1
    assert opened(backend, cookie.value) == {
        "email": EMAIL,
        "csrf": CSRF,
        "card": CARD,
        "note": NOTE,
    }
    assert subject.raw(cookie.session_id).startswith(b"1s ")


def test_a_write_racing_a_regenerate_finds_the_new_record_through_the_sealed_forward(
    subject: Subject,
) -> None:
    middleware = subject.middleware()
    backend = middleware.backend
    assert isinstance(backend, ServerSideBackend)
    (cookie,) = visit(Client(middleware), "/login")
    login, slow = opened(backend, cookie.value), opened(backend, cookie.value)

    login.regenerate()
    login["user"] = "bob"
    backend.commit(login)
    slow["card"] = CARD  # holds only the old id
    backend.commit(slow)

    forward = subject.raw(cookie.session_id)
    assert forward.startswith(b"1s F ")
    for revealing in (login.id, store_key(login.id)):
        assert revealing.encode() not in forward
    new_cookie = backend.signer.sign(login.id)
    assert opened(backend, new_cookie) == {
        "email": EMAIL,
        "csrf": CSRF,
        "user": "bob",
        "card": CARD,
    }
    assert backend.stats.merges == 1
    assert Session(lambda: backend.open(cookie.value)).new  # the old id stops working


# -- rotation, migration -----------------------------------------------------------------


def test_a_record_sealed_with_an_old_secret_is_resealed_with_the_current_one_on_its_next_write(
    subject: Subject,
) -> None:
    (cookie,) = visit(subject.client(OLD_SECRET), "/login")
    sealed_before = subject.raw(cookie.session_id)

    rotated = cookie_client(subject, cookie, secret_key=SECRET, fallback_keys=[OLD_SECRET])
    assert EMAIL in read(rotated)
    assert subject.raw(cookie.session_id) == sealed_before  # a read writes nothing
    visit(rotated, "/note")

    resealed = Record.decode(subject.raw(cookie.session_id), record_lock(cookie.session_id))
    assert resealed is not None and NOTE in resealed.text
    assert (
        Record.decode(subject.raw(cookie.session_id), record_lock(cookie.session_id, OLD_SECRET))
        is None
    )
    # The response re-signed the cookie too: the old secret can now be dropped.
    current_only = subject.client(SECRET)
    current_only.set_cookie("session", rotated.get_cookie("session").value)  # type: ignore[union-attr]
    assert NOTE in read(current_only)


def test_switching_sealing_on_and_off_keeps_every_session(subject: Subject) -> None:
    (cookie,) = visit(subject.client(seal_records=False), "/login")
    assert subject.raw(cookie.session_id).startswith(b"1 ")

    sealing = cookie_client(subject, cookie, seal_records=True)
    assert EMAIL in read(sealing)
    assert subject.raw(cookie.session_id).startswith(b"1 ")  # sealed on its next write
    visit(sealing, "/card")
    assert subject.raw(cookie.session_id).startswith(b"1s ")

    plain = cookie_client(subject, cookie, seal_records=False)
    assert CARD in read(plain)  # a sealed record still opens: the key is there
    visit(plain, "/note")
    assert subject.raw(cookie.session_id).startswith(b"1 ")

    again = cookie_client(subject, cookie, seal_records=True)
    assert NOTE in read(again) and CARD in read(again)


# -- plain records in a sealed deployment ------------------------------------------------


def planted_plain(data: str = '{"user": "admin"}') -> bytes:
    """A plain record, as a server that does not seal writes one (or whoever holds the store)."""
    now = int(time.time())
    return b"1 %d %d 0 0 %s" % (now, now, data.encode())


def test_a_plain_record_stays_readable_until_require_sealed_refuses_it(
    subject: Subject, caplog: pytest.LogCaptureFixture
) -> None:
    (cookie,) = visit(subject.client(), "/login")
    subject.replace(cookie.session_id, planted_plain())

    # Migrating (sealing on, require_sealed off): plain records are read, as old ones must be.
    assert "admin" in read(cookie_client(subject, cookie))
    strict = cookie_client(subject, cookie, require_sealed=True)
    assert_dropped(strict, caplog, "plain session record dropped")


def test_a_planted_plain_forward_is_never_followed(
    subject: Subject, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = subject.middleware()
    backend = middleware.backend
    assert isinstance(backend, ServerSideBackend)
    (cookie,) = visit(Client(middleware), "/login")
    victim = opened(backend, cookie.value)
    # Whoever holds the store plants a plain record of their own and points the
    # victim's record at it, as a regeneration by a server that does not seal would.
    (theirs,) = visit(subject.client(seal_records=False), "/note")
    bait = subject.raw(theirs.session_id)
    subject.replace(cookie.session_id, b"1 F " + store_key(theirs.session_id).encode("ascii"))

    victim["card"] = CARD
    backend.commit(victim)  # conflicts: the victim's record changed under it

    assert subject.raw(theirs.session_id) == bait  # nothing written where the forward points
    everything = b"\n".join(subject.dump().values())
    assert CARD.encode() not in everything and EMAIL.encode() not in everything
    assert backend.stats.dropped == 1  # a session gone, as a destroyed one
    assert_dropped(cookie_client(subject, cookie), caplog, "plain session record dropped")


def test_require_sealed_without_sealing_fails_at_start_up_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="require_sealed=True") as caught:
        SessionMiddleware(session_app(ROUTES), SECRET, store=MemoryStore(), require_sealed=True)
    assert caught.value.settings == ("require_sealed", "seal_records")
    with pytest.raises(ConfigurationError, match="WSGI_SESSION_REQUIRE_SEALED"):
        from_env(
            session_app(ROUTES),
            {
                "WSGI_SESSION_SECRET_KEY": SECRET,
                "WSGI_SESSION_STORE": "memory://",
                "WSGI_SESSION_REQUIRE_SEALED": "on",
            },
        )


def test_flask_session_require_sealed_setting() -> None:
    from flask import Flask

    from wsgi_session.flask import Session as FlaskSessions

    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, SESSION_REQUIRE_SEALED=True)
    with pytest.raises(ConfigurationError, match=r"SESSION_REQUIRE_SEALED=True .*SESSION_SEAL_"):
        FlaskSessions(app, store=MemoryStore())


def test_gc_purges_expired_sealed_records(tmp_path: Path) -> None:
    from wsgi_session.stores.sqlite import SQLiteStore

    clock = FakeClock()
    store = SQLiteStore(tmp_path / "sessions.sqlite3", clock=clock)
    client = Client(
        SessionMiddleware(
            session_app(SEALED_ROUTES), SECRET, store=store, seal_records=True, clock=clock
        )
    )
    visit(client, "/card", "/login")  # a live record and a forward
    clock.advance(14 * 24 * 3600 + 1)

    assert store.purge_expired() == 2
    store.close()


# -- configuration -------------------------------------------------------------------------


@pytest.fixture
def without_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the package is installed here, so its absence is simulated."""
    monkeypatch.setattr(crypto, "AESGCM", None)
    monkeypatch.setattr(sealing, "AESGCM", None)


@pytest.mark.usefixtures("without_cryptography")
def test_sealing_without_cryptography_fails_at_start_up_naming_the_extra() -> None:
    with pytest.raises(ConfigurationError, match=r"wsgi-session\[crypto\]") as caught:
        SessionMiddleware(session_app(ROUTES), SECRET, store=MemoryStore(), seal_records=True)
    assert caught.value.setting == "seal_records"
    assert str(caught.value).startswith("seal_records=True needs the 'cryptography' package")

    with pytest.raises(ConfigurationError, match=r"WSGI_SESSION_SEAL_RECORDS.*\[crypto\]"):
        from_env(
            session_app(ROUTES),
            {
                "WSGI_SESSION_SECRET_KEY": SECRET,
                "WSGI_SESSION_STORE": "memory://",
                "WSGI_SESSION_SEAL_RECORDS": "true",
            },
        )


def test_without_cryptography_a_sealed_record_is_dropped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    (cookie,) = visit(
        Client(
            SessionMiddleware(session_app(SEALED_ROUTES), SECRET, store=store, seal_records=True)
        ),
        "/login",
    )
    # Fault injection: the package is installed here, so its absence is simulated.
    monkeypatch.setattr(sealing, "AESGCM", None)
    plain = Client(SessionMiddleware(session_app(SEALED_ROUTES), SECRET, store=store))
    plain.set_cookie("session", cookie.value)

    with caplog.at_level(logging.WARNING, logger="wsgi_session"):
        assert read(plain) == "{}"
    assert "'cryptography' package is missing" in caplog.text


def test_sealing_with_the_cookie_store_fails_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match="keeps no records") as caught:
        SessionMiddleware(session_app(ROUTES), SECRET, store=CookieStore(), seal_records=True)
    assert caught.value.settings == ("seal_records", "store")


def test_the_setting_is_read_from_the_environment() -> None:
    middleware = from_env(
        session_app(ROUTES),
        {
            "WSGI_SESSION_SECRET_KEY": SECRET,
            "WSGI_SESSION_STORE": "memory://",
            "WSGI_SESSION_SEAL_RECORDS": "on",
        },
    )
    assert middleware.seal_records
    assert isinstance(middleware.backend, ServerSideBackend) and middleware.backend.seal_records


def test_flask_session_seal_records_setting() -> None:
    from flask import Flask
    from flask import session as flask_session

    from wsgi_session.flask import Session as FlaskSessions

    store = MemoryStore()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, SESSION_SEAL_RECORDS=True)

    @app.route("/login")
    def login() -> str:
        flask_session["email"] = EMAIL
        return "ok"

    @app.route("/read")
    def read_email() -> str:
        return str(flask_session.get("email"))

    FlaskSessions(app, store=store)
    client = app.test_client()
    response = client.get("/login")
    session_id = one_cookie(response).session_id  # type: ignore[arg-type]
    found = store.load(store_key(session_id))
    assert found is not None and found[0].startswith(b"1s ") and EMAIL.encode() not in found[0]
    assert client.get("/read").text == EMAIL


def test_flask_seals_from_the_request_after_sealing_is_switched_on() -> None:
    # app.config is read on every request, as Flask's own session settings are:
    # a deployment switching sealing on (or a test) needs no new Session(app).
    from flask import Flask
    from flask import session as flask_session

    from wsgi_session.flask import Session as FlaskSessions

    store = MemoryStore()
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET)

    @app.route("/login")
    def login() -> str:
        flask_session["email"] = EMAIL
        return "ok"

    FlaskSessions(app, store=store)
    client = app.test_client()
    plain = one_cookie(client.get("/login")).session_id
    found = store.load(store_key(plain))  # type: ignore[arg-type]
    assert found is not None and found[0].startswith(b"1 ")

    app.config["SESSION_SEAL_RECORDS"] = True
    client = app.test_client()
    sealed = one_cookie(client.get("/login")).session_id
    found = store.load(store_key(sealed))  # type: ignore[arg-type]
    assert found is not None and found[0].startswith(b"1s ") and EMAIL.encode() not in found[0]


@pytest.mark.usefixtures("without_cryptography")
def test_flask_names_its_setting_when_cryptography_is_missing() -> None:
    from flask import Flask

    from wsgi_session.flask import Session as FlaskSessions

    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, SESSION_SEAL_RECORDS=True)
    with pytest.raises(ConfigurationError, match=r"SESSION_SEAL_RECORDS=True needs .*\[crypto\]"):
        FlaskSessions(app, store=MemoryStore())


# -- any change to a sealed record -----------------------------------------------------------

_PROPERTY_STORE = MemoryStore()
_PROPERTY_CLIENT = Client(
    SessionMiddleware(session_app(SEALED_ROUTES), SECRET, store=_PROPERTY_STORE, seal_records=True)
)
(_PROPERTY_COOKIE,) = [
    cookie for cookie in set_cookies(_PROPERTY_CLIENT.get("/login")) if not cookie.expires_now
]
_PROPERTY_KEY = store_key(_PROPERTY_COOKIE.session_id)
_PROPERTY_RECORD = _PROPERTY_STORE.load(_PROPERTY_KEY)[0]  # type: ignore[index]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(min_value=0, max_value=len(_PROPERTY_RECORD) - 1),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_byte_flipped_in_a_sealed_record_gives_a_fresh_session(
    position: int, flip: int
) -> None:
    changed = bytearray(_PROPERTY_RECORD)
    changed[position] ^= flip
    found = _PROPERTY_STORE.load(_PROPERTY_KEY)
    assert found is not None
    assert _PROPERTY_STORE.save(_PROPERTY_KEY, bytes(changed), 3600, found[1])

    response = Client(_PROPERTY_CLIENT.application, use_cookies=False).get(
        "/read", headers={"Cookie": f"session={_PROPERTY_COOKIE.value}"}
    )

    assert response.status_code == 200
    assert response.text == "{}"
    # No session: at most the cookie that named none is expired, as for a record gone missing.
    assert all(cookie.expires_now for cookie in set_cookies(response))


def test_a_request_derives_its_sessions_key_once_for_the_read_and_the_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = Client(
        SessionMiddleware(
            session_app(SEALED_ROUTES), SECRET, store=MemoryStore(), seal_records=True
        )
    )
    visit(client, "/login")
    derived = calls_to(monkeypatch, sealing, "AESGCM")  # an AES-GCM per derived key

    visit(client, "/note")  # opens the record, then seals the changed one

    assert len(derived) == 1


# -- sealed and owned: the per-user index on sealed records -----------------------

OWNER = "alice-0042"
AGENTS = ["Mozilla/5.0 (Phone; sealed-agent-one)", "Mozilla/5.0 (Laptop; sealed-agent-two)"]


def owned_site(subject: Subject, **options: Any) -> tuple[SessionMiddleware, list[Client]]:
    """Two browsers of one user logged in on a sealed middleware that records clients."""
    holder: list[SessionMiddleware] = []

    def listing(session: Session) -> list[tuple[bool, str, str]]:
        found = holder[0].sessions.of(OWNER, current=session)
        return [(info.current, info.user_agent, info.address) for info in found]

    def log_in_owner(session: Session) -> None:
        log_in(session)
        session["user"] = OWNER

    routes = {
        **SEALED_ROUTES,
        "login": log_in_owner,
        "list": listing,
        "revoke-others": lambda session: holder[0].sessions.revoke(OWNER, keep=session),
    }
    options.setdefault("seal_records", True)
    middleware = SessionMiddleware(
        session_app(routes),
        SECRET,
        store=subject.store,
        owner_key="user",
        record_client=True,
        **options,
    )
    holder.append(middleware)
    browsers = []
    for index, agent in enumerate(AGENTS):
        browser = Client(middleware)
        environ = {"HTTP_USER_AGENT": agent, "REMOTE_ADDR": f"198.51.100.{10 + index}"}
        assert browser.get("/card", environ_base=environ).status_code == 200
        assert browser.get("/login", environ_base=environ).status_code == 200
        browsers.append(browser)
    return middleware, browsers


def test_sealed_owned_sessions_are_listed_and_a_dump_shows_neither_data_nor_client(
    subject: Subject,
) -> None:
    middleware, (phone, _laptop) = owned_site(subject)

    listed = middleware.sessions.of(OWNER)
    assert sorted((info.user_agent, info.address) for info in listed) == [
        (AGENTS[1], "198.51.100.0/24"),  # the laptop: "Mozilla/5.0 (L..." sorts first
        (AGENTS[0], "198.51.100.0/24"),
    ]
    assert phone.get("/list").text.count("True") == 1  # the current session is marked

    dump = subject.dump()
    everything = b"\n".join(key + b"\n" + value for key, value in dump.items())
    for text in [*STORED, OWNER, "user", *AGENTS, "Phone", "Laptop", "198.51.100"]:
        assert text.encode() not in everything, text
    owned = [value for value in dump.values() if b"2s " in value]
    assert len(owned) == 2  # the two live records: sealed, with the owner header
    for raw in owned:
        header = raw[raw.index(b"2s ") :].split(b" ", 8)
        assert header[7].startswith(b"~")  # the client field, sealed under the owner's key


def test_revoke_ends_sealed_sessions(subject: Subject) -> None:
    middleware, (phone, laptop) = owned_site(subject)

    assert laptop.get("/revoke-others").text == "1"  # the phone's session
    assert read(phone) == "{}"  # logged out: a fresh, empty session
    assert EMAIL in read(laptop)
    assert [info.current for info in middleware.sessions.of(OWNER, current=None)] == [False]
    assert middleware.sessions.revoke(OWNER) == 1
    assert read(laptop) == "{}"
    assert middleware.sessions.of(OWNER) == []


def test_an_edited_owner_header_does_not_open(subject: Subject) -> None:
    """The owner fields are part of the sealed header: changing one drops the session."""
    _, (phone, _laptop) = owned_site(subject)
    cookie = one_cookie(phone.get("/note"))
    raw = subject.raw(cookie.session_id)
    fields = raw.split(b" ", 8)
    fields[6] = b"%d" % (int(fields[6]) + 1)  # "indexed until", one second later
    subject.replace(cookie.session_id, b" ".join(fields))
    assert read(phone) == "{}"


def test_switching_sealing_on_seals_an_owned_record_and_its_client(subject: Subject) -> None:
    middleware, (phone, _laptop) = owned_site(subject, seal_records=False)
    cookie = one_cookie(phone.get("/note"))
    assert subject.raw(cookie.session_id).startswith(b"2 ")
    assert AGENTS[0].encode() not in subject.raw(cookie.session_id)  # encoded, not sealed

    sealed, _ = owned_site(subject)
    resealing = Client(sealed)
    resealing.set_cookie("session", cookie.value)
    assert resealing.get("/card").status_code == 200
    raw = subject.raw(cookie.session_id)
    assert raw.startswith(b"2s ") and raw.split(b" ", 8)[7].startswith(b"~")
    assert NOTE in read(resealing)
    agents = {info.user_agent for info in sealed.sessions.of(OWNER)}
    assert AGENTS[0] in agents  # the client recorded in the clear, now sealed, still listed
    assert {info.user_agent for info in middleware.sessions.of(OWNER)} == agents


def readable_lock_key(session_id: str, secret: str) -> bytes:
    """A session's record key as the module docstring spells it: HKDF, then HKDF-Expand."""
    master = HKDF(SHA256(), 32, salt=None, info=sealing.PURPOSE).derive(secret.encode())
    info = sealing.PURPOSE + b" " + session_id.encode("ascii")
    return HKDFExpand(SHA256(), 32, info=info).derive(master)


@pytest.mark.parametrize("session_id", ["x" * 43, "A-_09" * 9, "a"])
def test_record_keys_are_hkdf_expands_so_every_sealed_record_stays_readable(
    session_id: str,
) -> None:
    """A record's key is the docstring's HKDF then HKDF-Expand of its id, both ways.

    A record sealed under the current secret or either fallback opens; what it seals
    opens with the current secret's key.
    """
    older = "older-secret-0123456789abcdef0123456789abcdef"
    ring = KeyRing(SECRET, [OLD_SECRET, older])
    key = store_key(session_id)
    lock = RecordSealer(ring).lock(session_id, key)
    header = b"1s 1 2 0 0 "
    aad = key.encode("ascii") + b"\n" + header
    for secret in (SECRET, OLD_SECRET, older):
        readable = AESGCM(readable_lock_key(session_id, secret))
        nonce = b"n" * crypto.NONCE_BYTES
        assert lock.open(nonce + readable.encrypt(nonce, b'{"a":1}', aad), header) == b'{"a":1}'
    sealed = lock.seal(b'{"b":2}', header)  # with the current secret
    current = AESGCM(readable_lock_key(session_id, SECRET))
    assert current.decrypt(sealed[:12], sealed[12:], aad) == b'{"b":2}'


def test_every_record_format_stays_readable() -> None:
    """Plain 1, owned 2, sealed 1s as the branches wrote them, and sealed owned 2s."""
    digest = b"ab" * 32
    plain = Record.decode(b'1 1 2 0 0 {"a":1}')
    owned = Record.decode(b"2 1 2 0 0 " + digest + b' 99 - {"a":1}')
    assert plain is not None and plain.owner is None and plain.text == '{"a":1}'
    assert owned is not None and owned.owner is not None and owned.owner.indexed_until == 99
    lock = record_lock("x" * 43)
    for record in (plain, owned):
        sealed = record.encode(lock)
        assert sealed[:3] == (b"1s " if record.owner is None else b"2s ")
        assert Record.decode(sealed, lock) == record
        assert Record.decode(sealed) is None  # no lock, no record
        header = Record.header(sealed)  # what listing reads: the header, data left sealed
        assert header is not None and header.owner == record.owner and header.text == ""
    empty = owned._replace(text="{}").encode(lock)
    assert Record.header(empty) == owned._replace(text="{}")  # its length says it is empty
