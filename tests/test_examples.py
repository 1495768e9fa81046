"""Each example, started the way docs/deploying.md shows, answering real HTTP requests."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from wsgi_server import (
    BIN,
    ROOT,
    ServerProcess,
    free_port,
    gunicorn_command,
    server_env,
    visit,
)

SECRET = secrets.token_hex(32)

Serve = Callable[..., ServerProcess]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Run a command from the repository root, as the docs do, on a free port."""
    servers: list[ServerProcess] = []

    def serve(command: Callable[[int], list[str]], **settings: str) -> ServerProcess:
        port = free_port()
        server = ServerProcess(
            command(port),
            env=server_env(tmp_path, **settings),
            cwd=ROOT,
            port=port,
            log_dir=tmp_path,
        )
        servers.append(server)
        return server.start()

    yield serve
    for server in servers:
        server.stop()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path}/sessions.db"


def assert_counts_and_forgets(server: ServerProcess) -> None:
    browser = requests.Session()
    assert visit(browser, server.url)[0] == 1
    assert visit(browser, server.url)[0] == 2
    assert browser.get(server.url + "logout", timeout=10).text == "Forgotten.\n"
    assert visit(browser, server.url)[0] == 1


def test_bare_wsgi_app(serve: Serve, tmp_path: Path) -> None:
    server = serve(
        lambda port: [sys.executable, "examples/wsgi_app.py", str(port)],
        WSGI_SESSION_SECRET_KEY=SECRET,
        WSGI_SESSION_STORE=sqlite_url(tmp_path),
    )
    assert_counts_and_forgets(server)
    assert (tmp_path / "sessions.db").exists()


def test_gunicorn_conf(serve: Serve) -> None:
    server = serve(
        lambda port: gunicorn_command(
            "-c", "examples/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"
        ),
        WSGI_SESSION_SECRET_KEY=SECRET,
    )
    assert_counts_and_forgets(server)


def test_paste_ini_under_gunicorn(serve: Serve, tmp_path: Path) -> None:
    server = serve(
        lambda port: gunicorn_command(
            "--chdir", "examples", "--paste", "examples/paste.ini", "--bind", f"127.0.0.1:{port}"
        ),
        WSGI_SESSION_SECRET_KEY=SECRET,
        WSGI_SESSION_STORE=sqlite_url(tmp_path),
    )
    assert_counts_and_forgets(server)
    assert (tmp_path / "sessions.db").exists()


def test_flask_app(serve: Serve, tmp_path: Path) -> None:
    server = serve(
        lambda port: [
            str(BIN / "flask"),
            "--app",
            "examples/flask_app.py",
            "run",
            "--port",
            str(port),
        ],
        FLASK_SECRET_KEY=SECRET,
        FLASK_SESSION_STORE=sqlite_url(tmp_path),
    )
    browser = requests.Session()
    assert browser.get(server.url, timeout=10).json()["visits"] == 1
    anonymous = browser.cookies["session"]

    page = browser.post(server.url + "login", data={"name": "ann"}, timeout=10).json()
    assert page["user"] == "ann" and page["visits"] == 2
    assert browser.cookies["session"] != anonymous  # a new id on login

    phone = requests.Session()
    phone.post(server.url + "login", data={"name": "ann"}, timeout=10)
    listed = browser.get(server.url + "sessions", timeout=10).json()["sessions"]
    assert sorted(entry["current"] for entry in listed) == [False, True]
    page = browser.post(server.url + "password", timeout=10).json()
    assert page["user"] == "ann"  # still logged in here ...
    assert phone.get(server.url, timeout=10).json()["user"] is None  # ... and only here
    assert len(browser.get(server.url + "sessions", timeout=10).json()["sessions"]) == 1

    page = browser.post(server.url + "logout", timeout=10).json()
    assert page["user"] is None and page["visits"] == 1
    assert (tmp_path / "sessions.db").exists()
