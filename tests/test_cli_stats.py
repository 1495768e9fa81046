"""``wsgi-session stats`` against real stores: SQLite, memcached and Redis.

Sessions are made through the middleware (plain, permanent, logged in, logged
out), one timed-out record is planted with a long store TTL, and the counts
the command prints are checked against them, with the store's own figures.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from conftest import Run
from memcached_server import MemcachedServer
from redis_server import RedisServer
from werkzeug.test import Client

from wsgi_session.backends.slots import store_key
from wsgi_session.config import load_env, store_from_url
from wsgi_session.record import Record

SECRET = "stats-test-secret-0123456789abcdef0123456789abcdef"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    session = environ["wsgi_session"]
    path = environ["PATH_INFO"]
    if path == "/permanent":
        session.permanent = True
    if path == "/login":
        session["user"] = environ["QUERY_STRING"]
        session.regenerate()  # the old id's record becomes a forward
    elif path == "/logout":
        session.destroy()
    else:
        session["n"] = 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def make_sessions(url: str) -> None:
    """7 live sessions (2 permanent, 2 owned), 2 forwards, 1 timed out, 1 logged out."""
    middleware = load_env(
        {
            "WSGI_SESSION_SECRET_KEY": SECRET,
            "WSGI_SESSION_STORE": url,
            "WSGI_SESSION_OWNER_KEY": "user",
        }
    ).middleware(app)
    for path in ["/new", "/new", "/new", "/permanent", "/permanent"]:
        assert Client(middleware).get(path).status_code == 200
    for user in ("ann", "bob"):
        client = Client(middleware)
        client.get("/new")
        client.get(f"/login?{user}")
    client = Client(middleware)
    client.get("/new")
    client.get("/logout")
    old = time.time() - 40 * 86400
    store = store_from_url(url)
    store.save(store_key("t" * 43), Record(old, old, False, None, '{"n":1}').encode(), 3600)  # type: ignore[union-attr]


def figures(out: str) -> dict[str, int]:
    return {
        name.strip(): int(value.replace(",", ""))
        for name, value in re.findall(r"^  (\S.*?)\s{2,}([\d,]+)$", out, re.MULTILINE)
    }


def assert_counted(out: str) -> dict[str, int]:
    found = figures(out)
    assert found["live"] == 7, out
    assert found["permanent"] == 2, out
    assert found["with an owner"] == 2, out
    assert found["expired, not yet dropped"] == 1, out
    assert found["retired (forwards, emptied)"] == 2, out
    assert found["unreadable"] == 0, out
    return found


def test_stats_of_sqlite(run: Run, tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'sessions.db'}"
    make_sessions(url)
    status, out, err = run("stats", "--progress", STORE=url)
    assert status == 0, err
    found = assert_counted(out)
    assert found["file bytes"] == (tmp_path / "sessions.db").stat().st_size
    assert "scanning [" + "#" * 30 + "] 10/10" in err  # every row not past its store TTL


def test_stats_of_memcached(run: Run, memcached_server: MemcachedServer) -> None:
    url = f"memcached://{memcached_server.address}"
    make_sessions(url)
    status, out, err = run("stats", STORE=url)
    assert status == 0, err
    found = assert_counted(out)
    # 10 records and the two owners' index entries.
    assert found["items"] == 12, out
    assert found["bytes"] > 0 and found["memory limit bytes"] > 0
    assert err == ""  # no bar unless asked for, or on a terminal


def test_stats_of_redis(run: Run, redis_server: RedisServer) -> None:
    url = f"redis://{redis_server.address}/0"
    make_sessions(url)
    status, out, err = run("stats", "--progress", STORE=url)
    assert status == 0, err
    found = assert_counted(out)
    assert found["keys"] == 12, out
    assert found["used memory bytes"] > 0
    assert "scanning" in err


def test_stats_of_a_store_that_cannot_list_its_records(run: Run) -> None:
    status, out, _ = run("stats", STORE="memory://")
    assert status == 0
    assert out.strip() == "memory://: MemoryStore cannot list its records"


def test_stats_when_memcached_is_down(run: Run, memcached_server: MemcachedServer) -> None:
    url = f"memcached://{memcached_server.address}"
    memcached_server.kill()
    status, _, err = run("stats", STORE=url)
    assert status == 1
    assert err.startswith("wsgi-session stats: error: memcached server"), err
