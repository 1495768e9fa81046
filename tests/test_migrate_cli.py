"""``wsgi-session migrate --from URL --to URL`` and what ``check`` says of a migration.

The sessions are written by a real SessionMiddleware on a real SQLite file; the
copy goes to a real redis-server, the application then serving from it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import Run
from helpers import ROUTES, SECRET, session_app, set_cookies, store_key
from redis_server import RedisServer
from werkzeug.test import Client

from wsgi_session import SessionMiddleware
from wsgi_session.stores.redis import RedisStore
from wsgi_session.stores.sqlite import SQLiteStore

COUNTER = {
    **ROUTES,
    "count": lambda session: session.__setitem__("n", session.get("n", 0) + 1),
    "n": lambda session: session.get("n"),
}
APP = session_app(COUNTER)


def clients_on(store: object, count: int) -> list[Client]:
    """``count`` browsers, each with a session on ``store`` (n = 1)."""
    app = SessionMiddleware(APP, SECRET, store=store)  # type: ignore[arg-type]
    clients = [Client(app) for _ in range(count)]
    for client in clients:
        client.get("/count")
    return clients


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


def test_the_copy_moves_every_live_session_with_its_time_left(
    run: Run, database: Path, redis_server: RedisServer
) -> None:
    old = SQLiteStore(database)
    clients = clients_on(old, 5)
    old.save("e" * 64, b"1 1 1 0 0 {}", 1)  # expires in a second
    old.save("f" * 64, b"\x80\x04 a pickle", 600)
    time.sleep(1.1)

    status, out, err = run("migrate", "--from", f"sqlite://{database}", "--to", redis_server.url)

    assert status == 0, err
    assert "copied 5, skipped as newer 0, expired 1, unreadable 1" in out
    assert "7/7" in err  # the progress bar got to the end
    new = SessionMiddleware(APP, SECRET, store=RedisStore(redis_server.url))
    for client in clients:
        client.application = new
        assert client.get("/n").text == "1"  # the same cookie, the same session, no adoption
    ttl = redis_server.client().ttl(store_key(_id(clients[0])))
    assert 14 * 86400 - 60 < ttl <= 14 * 86400


def _id(client: Client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value.split(".", 1)[0]


def test_a_second_run_copies_nothing_and_never_overwrites_newer(
    run: Run, database: Path, redis_server: RedisServer
) -> None:
    clients = clients_on(SQLiteStore(database), 3)
    args = ("migrate", "--from", f"sqlite://{database}", "--to", redis_server.url)
    assert "copied 3," in run(*args)[1]
    new = SessionMiddleware(APP, SECRET, store=RedisStore(redis_server.url))
    clients[0].application = new
    time.sleep(1)  # a newer access time, in whole seconds
    clients[0].get("/count")  # the application wrote it on the target: n = 2

    status, out, _ = run(*args)

    assert status == 0 and "copied 0, skipped as newer 3," in out
    assert clients[0].get("/n").text == "2"


def test_a_stopped_copy_resumes_after_its_checkpoint(
    run: Run, database: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    clients_on(SQLiteStore(database), 4)
    checkpoint = tmp_path / "copy.checkpoint"
    keys = [key for key, _, _ in SQLiteStore(database).scan()]
    checkpoint.write_text(keys[1], encoding="ascii")  # as a run stopped after two records

    status, out, _ = run(
        "migrate",
        "--from",
        f"sqlite://{database}",
        "--to",
        redis_server.url,
        "--checkpoint",
        str(checkpoint),
    )

    assert status == 0 and f"resuming after {keys[1]}" in out and "copied 2," in out
    target = RedisStore(redis_server.url)
    assert [target.load(key) is not None for key in keys] == [False, False, True, True]
    assert checkpoint.read_text(encoding="ascii") == keys[-1]


def test_the_copy_while_the_application_serves_keeps_every_write(
    run: Run, database: Path, redis_server: RedisServer
) -> None:
    clients = clients_on(SQLiteStore(database), 20)
    args = ("migrate", "--from", f"sqlite://{database}", "--to", redis_server.url)
    assert run(*args)[0] == 0
    new = SessionMiddleware(APP, SECRET, store=RedisStore(redis_server.url))
    for client in clients:
        client.application = new
    done = threading.Event()

    def load() -> None:  # bounded: 3 rounds of one write per session, spread over > 1 s
        for _ in range(3):
            for client in clients:
                client.get("/count")
            time.sleep(0.4)
        done.set()

    worker = threading.Thread(target=load)
    worker.start()
    while not done.is_set():
        assert run(*args)[0] == 0  # copying again and again while the writes land
    worker.join(timeout=30)
    assert [client.get("/n").text for client in clients] == ["4"] * 20


def test_a_source_that_cannot_list_its_records_is_refused(
    run: Run, redis_server: RedisServer
) -> None:
    status, _, err = run("migrate", "--from", "memcached://127.0.0.1:1", "--to", redis_server.url)
    assert status == 1 and "cannot list its records" in err


def test_check_reports_the_migration_source_and_whether_it_answers(
    run: Run, database: Path, redis_server: RedisServer
) -> None:
    SQLiteStore(database).save("k" * 64, b"v", ttl=60)
    settings = {"SECRET_KEY": SECRET, "STORE": redis_server.url}
    status, out, err = run("check", **settings, MIGRATE_FROM=f"sqlite://{database}")
    assert status == 0, err
    assert f"migrating from sqlite://{database}, which answered" in out
    assert "WSGI_SESSION_MIGRATE_FROM" in out
    redis_server.kill()
    status, out, err = run(
        "check", SECRET_KEY=SECRET, STORE=f"sqlite://{database}", MIGRATE_FROM=redis_server.url
    )
    assert status == 1 and "Redis" in err


def test_an_adoption_answers_as_a_set_cookie(database: Path, redis_server: RedisServer) -> None:
    """The copy is optional: without it, each session moves on its first request."""
    clients = clients_on(SQLiteStore(database), 1)
    new = SessionMiddleware(
        APP, SECRET, store=RedisStore(redis_server.url), migrate_from=f"sqlite://{database}"
    )
    clients[0].application = new
    response = clients[0].get("/n")
    assert response.text == "1" and set_cookies(response)[0].session_id != ""


def test_copied_sessions_are_listed_under_their_owner(
    run: Run, database: Path, redis_server: RedisServer
) -> None:
    login = {**COUNTER, "login": lambda session: session.__setitem__("user", "alice")}
    old = SessionMiddleware(
        session_app(login), SECRET, store=SQLiteStore(database), owner_key="user"
    )
    Client(old).get("/login")
    assert run("migrate", "--from", f"sqlite://{database}", "--to", redis_server.url)[0] == 0
    new = SessionMiddleware(APP, SECRET, store=RedisStore(redis_server.url), owner_key="user")
    assert len(new.sessions.of("alice")) == 1
