"""A real gunicorn, two workers, sessions shared between them: both ways of wiring it."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from memcached_server import MemcachedServer
from wsgi_server import (
    EXAMPLES,
    ServerProcess,
    client,
    free_port,
    gunicorn_command,
    server_env,
    visit,
    visit_past_a_slow_client,
    visit_with_worker_paused,
)

FACTORY = 'wsgi_session:wrap("wsgi_app:app")'
MIN_REQUESTS = 20
MAX_REQUESTS = 200
SECRET = secrets.token_hex(32)

Start = Callable[..., ServerProcess]


def wiring_args(wiring: str, worker_class: str, port: int, *extra: str) -> list[str]:
    """gunicorn's arguments for one of the two documented ways, on ``port``."""
    common = ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", worker_class]
    common += extra
    if worker_class == "gthread":
        common += ["--threads", "4"]
    if wiring == "factory":
        return [*common, "--chdir", str(EXAMPLES), FACTORY]
    return ["--config", str(EXAMPLES / "gunicorn.conf.py"), *common]


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[Start]:
    """Start gunicorn with one wiring and worker class; every server stops after the test."""
    servers: list[ServerProcess] = []

    def start(
        wiring: str, worker_class: str, *extra: str, wait: bool = True, **settings: str
    ) -> ServerProcess:
        port = free_port()
        server = ServerProcess(
            gunicorn_command(*wiring_args(wiring, worker_class, port, *extra)),
            env=server_env(tmp_path, **settings),
            cwd=tmp_path,
            port=port,
        )
        servers.append(server)
        if wait:
            return server.start()
        server.run()
        return server

    yield start
    for server in servers:
        server.stop()


def assert_shared_by_both_workers(server: ServerProcess) -> None:
    """One browser's counter goes up by one on every request, whichever worker answers."""
    browser = client()
    answers = [visit(browser, server.url)]
    while len(answers) < MIN_REQUESTS or len({pid for _, pid in answers}) < 2:
        assert len(answers) < MAX_REQUESTS, f"one worker answered all: {answers}"
        answers += visit_past_a_slow_client(browser, server.port)
        if len({pid for _, pid in answers}) < 2:  # a gthread worker may have taken both
            answers.append(visit_with_worker_paused(browser, server.url, answers[-1][1]))
        answers += [visit(browser, server.url) for _ in range(3)]
    assert [visits for visits, _ in answers] == list(range(1, len(answers) + 1)), answers


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
@pytest.mark.parametrize("wiring", ["factory", "hook"])
def test_sqlite_sessions_are_shared_by_the_workers(
    start_gunicorn: Start, tmp_path: Path, wiring: str, worker_class: str
) -> None:
    database = tmp_path / "sessions.db"
    server = start_gunicorn(
        wiring,
        worker_class,
        WSGI_SESSION_SECRET_KEY=SECRET,
        WSGI_SESSION_STORE=f"sqlite://{database}",
    )
    assert_shared_by_both_workers(server)
    assert database.exists()


@pytest.mark.parametrize(("wiring", "worker_class"), [("factory", "sync"), ("hook", "gthread")])
def test_memcached_sessions_are_shared_by_the_workers(
    start_gunicorn: Start, memcached_server: MemcachedServer, wiring: str, worker_class: str
) -> None:
    server = start_gunicorn(
        wiring,
        worker_class,
        WSGI_SESSION_SECRET_KEY=SECRET,
        WSGI_SESSION_STORE=f"memcached://{memcached_server.address}?key_prefix=gunicorn:",
    )
    assert_shared_by_both_workers(server)


@pytest.mark.parametrize("wiring", ["factory", "hook"])
def test_a_preloaded_application_shares_sessions_too(
    start_gunicorn: Start, tmp_path: Path, wiring: str
) -> None:
    # With --preload the store is made before the fork; each worker must open its own connection.
    server = start_gunicorn(
        wiring,
        "gthread",
        "--preload",
        WSGI_SESSION_SECRET_KEY=SECRET,
        WSGI_SESSION_STORE=f"sqlite://{tmp_path}/sessions.db",
    )
    assert_shared_by_both_workers(server)


def test_the_default_store_is_the_sqlite_file_in_the_state_directory(
    start_gunicorn: Start, tmp_path: Path
) -> None:
    server = start_gunicorn("hook", "sync", WSGI_SESSION_SECRET_KEY=SECRET)
    assert_shared_by_both_workers(server)
    assert (tmp_path / "state" / "wsgi_session" / "sessions.sqlite3").exists()


@pytest.mark.parametrize("wiring", ["factory", "hook"])
def test_a_bad_setting_stops_gunicorn_with_its_name(start_gunicorn: Start, wiring: str) -> None:
    server = start_gunicorn(
        wiring,
        "sync",
        wait=False,
        WSGI_SESSION_SECRET_KEY=SECRET,
        WSGI_SESSION_COOKIE_SECURE="sometimes",
    )
    assert server.process is not None
    assert server.process.wait(timeout=60) != 0
    output = server.output()
    assert "WSGI_SESSION_COOKIE_SECURE='sometimes'" in output
    assert SECRET not in output
