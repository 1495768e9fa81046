"""The ``wsgi-session`` command: demo, init, gc, check and their help."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from conftest import Run
from database_servers import PG_PASSWORD, PostgresServer
from memcached_server import MemcachedServer, free_port
from wsgi_server import BIN, ServerProcess, server_env

from wsgi_session import PostgresStore
from wsgi_session.stores.sqlite import SQLiteStore

SECRET = "cli-test-secret-0123456789abcdef0123456789abcd"


@pytest.fixture(autouse=True)
def _environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variables a test sets; the default SQLite file under tmp_path."""
    for name in list(os.environ):
        if name.startswith("WSGI_SESSION_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


# -- help ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["demo", "gc", "check", "WSGI_SESSION_", "memcached://"]),
        (["demo"], ["--host", "--port", "visit counter", "SECRET_KEY"]),
        (["gc"], ["--prefix", "expired", "cron"]),
        (["check"], ["--prefix", "masked", "non-zero"]),
        (["sessions"], ["OWNER", "_user_id", "_auth_user_id"]),
        (["revoke"], ["OWNER", "sign out everywhere"]),
    ],
)
def test_help(argv: list[str], expected: list[str]) -> None:
    for command in ([str(BIN / "wsgi-session")], [sys.executable, "-m", "wsgi_session"]):
        done = subprocess.run(
            [*command, *argv, "--help"], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        for text in expected:
            assert text in done.stdout


def test_a_command_is_required() -> None:
    done = subprocess.run([sys.executable, "-m", "wsgi_session"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "COMMAND" in done.stderr


# -- check -------------------------------------------------------------------------


def test_check_shows_the_effective_configuration_with_secrets_masked(
    run: Run, tmp_path: Path
) -> None:
    database = tmp_path / "sessions.db"
    SQLiteStore(database).save("k", b"v", ttl=60)
    status, out, err = run(
        "check",
        SECRET_KEY=SECRET,
        FALLBACK_KEYS="old-secret-one,old-secret-two",
        STORE=f"sqlite://{database}",
        IDLE_TIMEOUT="90m",
    )
    assert status == 0, err
    assert SECRET not in out and "old-secret" not in out
    assert re.search(r"WSGI_SESSION_SECRET_KEY +\(hidden\) 46 characters", out)
    assert re.search(r"WSGI_SESSION_FALLBACK_KEYS +\(hidden\) 2 keys", out)
    assert re.search(r"WSGI_SESSION_IDLE_TIMEOUT +1h30m", out)
    assert re.search(r"WSGI_SESSION_REFRESH_INTERVAL +9m", out)
    assert "ok: the settings are valid and the store answered" in out


def test_check_does_not_create_a_missing_sqlite_file(run: Run, tmp_path: Path) -> None:
    database = tmp_path / "sessions.db"
    status, out, err = run("check", SECRET_KEY=SECRET, STORE=f"sqlite://{database}")
    assert status == 0, err
    assert f"there is no session database at {database} yet" in out
    # Created by check, it would belong to whoever ran it (often root), not the app.
    assert not database.exists()


def test_check_fails_on_a_bad_setting_naming_it(run: Run) -> None:
    status, out, err = run("check", SECRET_KEY=SECRET, COOKIE_SAMESITE="loose")
    assert status == 1
    assert "WSGI_SESSION_COOKIE_SAMESITE='loose'" in err
    assert SECRET not in err + out


def test_check_fails_without_a_secret(run: Run) -> None:
    status, _, err = run("check")
    assert status == 1
    assert "WSGI_SESSION_SECRET_KEY is not set" in err


def test_check_reaches_memcached(run: Run, memcached_server: MemcachedServer) -> None:
    url = f"memcached://{memcached_server.address}"
    status, out, err = run("check", SECRET_KEY=SECRET, STORE=url)
    assert status == 0, err
    assert "the store answered" in out
    memcached_server.stop()
    status, _, err = run("check", SECRET_KEY=SECRET, STORE=url)
    assert status == 1
    assert "unreachable" in err


def test_check_with_the_cookie_store_has_nothing_to_reach(run: Run) -> None:
    status, out, err = run("check", SECRET_KEY=SECRET, STORE="cookie://")
    assert status == 0, err
    assert "no server to reach" in out


def test_check_with_another_prefix(run: Run) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MYAPP_SECRET_KEY", SECRET)
        status, out, err = run("check", "--prefix", "MYAPP_")
    assert status == 0, err
    assert "MYAPP_SECRET_KEY" in out


# -- gc ------------------------------------------------------------------------------


def test_gc_purges_expired_sqlite_records_and_keeps_live_ones(run: Run, tmp_path: Path) -> None:
    database = tmp_path / "sessions.db"
    an_hour_ago = SQLiteStore(database, clock=lambda: time.time() - 3600)
    for key in ("a", "b", "c"):
        assert an_hour_ago.save(key, b"old", ttl=60)
    assert SQLiteStore(database).save("live", b"new", ttl=60)
    # gc needs no secret key: it never reads a session.
    status, out, err = run("gc", STORE=f"sqlite://{database}")
    assert status == 0, err
    assert out.startswith("purged 3 expired session records from sqlite://")
    assert SQLiteStore(database).load("live") is not None
    assert run("gc", STORE=f"sqlite://{database}")[1].startswith("purged 0 expired")


def test_gc_uses_the_default_sqlite_file_and_never_creates_it(run: Run, tmp_path: Path) -> None:
    default = tmp_path / "state" / "wsgi_session" / "sessions.sqlite3"
    status, _, err = run("gc")
    assert status == 1
    assert err.strip() == f"wsgi-session gc: no session database at {default}"
    assert not default.exists()

    SQLiteStore(default).save("k", b"v", ttl=60)
    status, out, _ = run("gc")
    assert status == 0
    assert str(default) in out


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("memcached://127.0.0.1:11211", "memcached drops expired records by itself"),
        ("cookie://", "cookie sessions live in the browsers"),
        ("memory://", "the memory store lives inside each server process"),
    ],
)
def test_gc_explains_stores_that_expire_by_themselves(run: Run, url: str, reason: str) -> None:
    status, out, _ = run("gc", STORE=url)
    assert status == 0
    assert out.startswith(f"nothing to purge in {url}: {reason}")


def test_gc_fails_when_the_store_cannot_be_reached(run: Run, tmp_path: Path) -> None:
    not_a_database = tmp_path / "sessions.db"
    not_a_database.mkdir()
    status, _, err = run("gc", STORE=f"sqlite://{not_a_database}")
    assert status == 1
    assert err.startswith("wsgi-session gc: error: SQLite session store")


def test_gc_refuses_a_bad_setting(run: Run) -> None:
    status, _, err = run("gc", STORE="sqlite://host/x.db")
    assert status == 1
    assert "WSGI_SESSION_STORE='sqlite://host/x.db'" in err


# -- demo ----------------------------------------------------------------------------


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    server = ServerProcess(
        [str(BIN / "wsgi-session"), "demo", "--port", str(port)],
        env=server_env(tmp_path),
        cwd=tmp_path,
        port=port,
    )
    yield server.start()
    server.stop()


def test_demo_counts_logs_in_with_a_new_id_and_logs_out(
    demo: ServerProcess, tmp_path: Path
) -> None:
    browser = requests.Session()
    assert "loaded this page <strong>1</strong> time in" in browser.get(demo.url).text
    page = browser.get(demo.url).text
    assert "loaded this page <strong>2</strong> times" in page
    assert "loaded from the store" in page and "idle timeout 14d" in page
    before = browser.cookies["session"]

    page = browser.post(demo.url + "login", data={"name": "Ann <admin>", "remember": "on"}).text
    assert "Logged in as <strong>Ann &lt;admin&gt;</strong>" in page
    assert f"changed from {before[:8]}" in page
    assert browser.cookies["session"] != before
    assert "kept for 14d" in page  # "keep me logged in": a permanent cookie
    assert "loaded this page <strong>3</strong> times" in page

    page = browser.post(demo.url + "logout").text
    assert "Logged out" in page
    assert "loaded this page <strong>1</strong> time in" in page
    assert "Not Found" in browser.get(demo.url + "favicon.ico").text
    assert (tmp_path / "state" / "wsgi_session" / "sessions.sqlite3").exists()
    assert "sessions end when the demo stops" in demo.output()


def test_demo_lists_your_sessions_and_signs_the_others_out(demo: ServerProcess) -> None:
    laptop, phone = requests.Session(), requests.Session()
    laptop.headers["User-Agent"] = "Laptop-Browser/1"
    phone.headers["User-Agent"] = "Phone-Browser/2"
    for browser in (laptop, phone):
        browser.post(demo.url + "login", data={"name": "Ann"})
    page = laptop.get(demo.url + "sessions").text
    assert "Laptop-Browser/1" in page and "Phone-Browser/2" in page
    assert page.count("this one") == 1 and "127.0.0.0/24" in page

    page = laptop.post(demo.url + "sessions/revoke-others").text
    assert "Laptop-Browser/1" in page and "Phone-Browser/2" not in page
    assert "Logged in as" not in phone.get(demo.url).text  # signed out
    assert "Logged in as <strong>Ann</strong>" in laptop.get(demo.url).text


def test_an_untouched_request_gets_no_cookie(demo: ServerProcess) -> None:
    response = requests.get(demo.url + "favicon.ico", timeout=10)
    assert response.status_code == 404
    assert "Set-Cookie" not in response.headers and "Vary" not in response.headers


# -- sessions and revoke ------------------------------------------------------------


def test_sessions_lists_and_revoke_ends_a_users_sessions(run: Run, tmp_path: Path) -> None:
    from werkzeug.test import Client

    from wsgi_session import SessionMiddleware

    database = tmp_path / "sessions.db"

    def login(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        session = environ["wsgi_session"]
        session.regenerate()  # type: ignore[attr-defined]
        session["_user_id"] = "alice"  # type: ignore[index]
        start_response("200 OK", [])
        return [b""]

    app = SessionMiddleware(
        login, SECRET, store=SQLiteStore(database), owner_key="_user_id", record_client=True
    )
    for agent in ("Firefox/128", "Safari/17"):
        Client(app).get(
            "/", headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": "10.1.2.3"}
        )
    settings = {"SECRET_KEY": SECRET, "STORE": f"sqlite://{database}"}

    status, out, err = run("sessions", "alice", **settings)
    assert status == 0, err
    assert "Firefox/128" in out and "Safari/17" in out and "10.1.2.0/24" in out
    assert out.endswith("2 live sessions of 'alice'\n")
    assert run("revoke", "alice", **settings)[1] == "revoked 2 sessions of 'alice'\n"
    assert run("sessions", "alice", **settings)[1] == "0 live sessions of 'alice'\n"


def test_sessions_with_the_cookie_store_says_why_it_cannot(run: Run) -> None:
    status, _, err = run("sessions", "alice", SECRET_KEY=SECRET, STORE="cookie://")
    assert status == 1
    assert "cookie store keeps each session in its browser's cookie" in err


# -- PostgreSQL: init, check, gc --------------------------------------------------------


def test_init_creates_the_postgres_table_and_check_sees_it(
    run: Run, shared_postgres: PostgresServer, table: str
) -> None:
    url = f"{shared_postgres.url}?table={table}&create_table=false"
    status, out, err = run("check", SECRET_KEY=SECRET, STORE=url)
    assert status == 1
    assert f"WSGI_SESSION_STORE ({url.replace(PG_PASSWORD, '***')}): the table" in err
    assert "does not exist (wsgi-session init creates it)" in err
    status, out, err = run("init", STORE=url)  # no secret key needed
    assert status == 0, err
    assert out.startswith("the session table is ready in postgresql://postgres:***@")
    assert shared_postgres.query("SELECT to_regclass(%s) IS NOT NULL", table) == [(True,)]
    status, out, err = run("check", SECRET_KEY=SECRET, STORE=url)
    assert status == 0, err
    assert "the store answered" in out
    assert PG_PASSWORD not in out + err
    assert run("init", STORE=url)[0] == 0  # again: nothing to do


def test_init_has_nothing_to_create_for_a_store_without_a_table(run: Run) -> None:
    status, out, _ = run("init", STORE="memory://")
    assert status == 0
    assert out.startswith("nothing to create in memory://")


def test_check_does_not_create_the_postgres_table(
    run: Run, shared_postgres: PostgresServer, table: str
) -> None:
    status, out, err = run("check", SECRET_KEY=SECRET, STORE=f"{shared_postgres.url}?table={table}")
    assert status == 0, err
    assert "the store answered" in out
    # Created by check, it would belong to the role check ran with, not the application's.
    assert shared_postgres.query("SELECT to_regclass(%s)", table) == [(None,)]


def test_check_names_a_wrong_postgres_schema(
    run: Run, shared_postgres: PostgresServer, table: str
) -> None:
    shared_postgres.query(f'CREATE TABLE "{table}" (key text PRIMARY KEY, data text)')
    status, _, err = run("check", SECRET_KEY=SECRET, STORE=f"{shared_postgres.url}?table={table}")
    assert status == 1
    assert f"the column {table}.data is text, not bytea" in err


def test_check_names_the_setting_when_postgres_is_unreachable(
    run: Run, postgres_server: PostgresServer
) -> None:
    postgres_server.kill()
    status, _, err = run("check", SECRET_KEY=SECRET, STORE=postgres_server.url)
    assert status == 1
    assert err.startswith("wsgi-session check: error: WSGI_SESSION_STORE: PostgreSQL session store")
    assert "Connection refused" in err
    assert PG_PASSWORD not in err


def test_gc_purges_expired_postgres_rows(
    run: Run, shared_postgres: PostgresServer, table: str
) -> None:
    url = f"{shared_postgres.url}?table={table}"
    an_hour_ago = PostgresStore(url, clock=lambda: time.time() - 3600)
    for key in ("a", "b", "c"):
        assert an_hour_ago.save(key, b"old", ttl=60)
    assert PostgresStore(url).save("live", b"new", ttl=60)
    status, out, err = run("gc", STORE=url)
    assert status == 0, err
    assert out.startswith("purged 3 expired session records from postgresql://postgres:***@")
    assert PostgresStore(url).load("live") is not None
