"""Sessions in real Redis servers, seen over HTTP through real gunicorn, and the settings.

``test_concurrency_gunicorn.py`` runs its writers-and-logout races on Redis too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from helpers import (
    ROUTES,
    SECRET,
    FakeClock,
    one_cookie,
    parse_set_cookie,
    session_app,
    set_cookies,
    store_key,
)
from redis_server import (
    ACL_PASSWORD,
    ACL_USER,
    HOST,
    RedisFactory,
    RedisServer,
    replica_online,
    wait_for,
)
from werkzeug.test import Client
from wsgi_server import ServerProcess, free_port, gunicorn_command, server_env

from wsgi_session import RedisStore, SessionMiddleware, StoreUnavailable
from wsgi_session.config import REDIS_SCHEMES, from_env, load_env, store_from_url
from wsgi_session.errors import ConfigurationError
from wsgi_session.stores import redis as redis_module

TESTS = Path(__file__).resolve().parent
IDLE_TIMEOUT = 3600
WORKERS = {
    "sync": ["--workers", "2"],
    "gthread": ["--workers", "1", "--threads", "4"],
}


class Site:
    """gunicorn serving ``concurrency_app`` on one Redis URL; a cookie-keeping client."""

    def __init__(self, store_url: str, worker_class: str, tmp_path: Path) -> None:
        signals = tmp_path / "signals"
        signals.mkdir()
        port = free_port()
        command = gunicorn_command(
            *("--bind", f"{HOST}:{port}", "--worker-class", worker_class),
            *WORKERS[worker_class],
            *("--chdir", str(TESTS), "concurrency_app:application"),
        )
        env = server_env(
            tmp_path,
            WSGI_SESSION_SECRET_KEY=SECRET,
            WSGI_SESSION_STORE=store_url,
            WSGI_SESSION_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
            CONCURRENCY_SIGNALS=str(signals),
        )
        self.server = ServerProcess(command, env=env, cwd=tmp_path, port=port).start()
        self.browser = requests.Session()
        self.browser.headers["Connection"] = "close"

    def get(self, path: str) -> requests.Response:
        return self.browser.get(self.server.url + path.lstrip("/"), timeout=10)

    def session_id(self) -> str:
        return str(self.browser.cookies["session"]).split(".")[0]


@pytest.fixture(params=list(WORKERS))
def serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Site]]:
    sites: list[Site] = []

    def start(store_url: str) -> Site:
        sites.append(Site(store_url, request.param, tmp_path))
        return sites[-1]

    yield start
    for site in sites:
        site.server.stop()


def test_round_trip_hashed_keys_and_ttl_over_gunicorn(
    serve: Callable[[str], Site], redis_server: RedisServer
) -> None:
    site = serve(f"{redis_server.url}/3?key_prefix=app:")
    written = site.get("/write?key=user")
    assert written.status_code == 200
    assert [c.name for c in map(parse_set_cookie, written.raw.headers.getlist("Set-Cookie"))] == [
        "session"
    ]
    assert site.get("/write?key=cart").json()["data"].keys() == {"user", "cart"}
    assert site.get("/read").json()["data"].keys() == {"user", "cart"}

    session_id = site.session_id()
    raw = redis_server.client(db=3)
    keys = list(raw.scan_iter(match="*", count=1000))
    assert keys == [f"app:{store_key(session_id)}".encode()]  # hashed, never the id itself
    assert session_id.encode() not in keys[0]
    assert raw.pttl(keys[0]) == pytest.approx(IDLE_TIMEOUT * 1000, abs=10_000)
    assert b'"user"' in raw.get(keys[0])  # type: ignore[operator]

    assert site.get("/logout").status_code == 200
    assert list(raw.scan_iter(match="*")) == []


def test_outage_is_a_503_then_recovers_without_a_restart(
    serve: Callable[[str], Site], redis_server: RedisServer
) -> None:
    site = serve(f"{redis_server.url}?timeout=0.3")
    assert site.get("/write?key=a").status_code == 200

    redis_server.kill()
    visitor = requests.get(site.server.url + "write?key=b", timeout=10)  # a new visitor's write
    assert visitor.status_code == 503
    assert visitor.headers["Retry-After"] == "1"
    assert "Set-Cookie" not in visitor.headers
    reader = site.get("/read")  # a load the app lets through is a 503 too, not a 500
    assert reader.status_code == 503
    assert reader.headers["Retry-After"] == "1"
    assert "session not saved; answering 503" in site.server.output()

    redis_server.start()  # same port, empty: no restart of gunicorn
    assert site.get("/read").json()["data"] == {}  # the old record was lost with the server
    assert site.get("/write?key=c").status_code == 200
    assert site.get("/read").json()["data"].keys() == {"c"}


def test_wait_for_replicas_refuses_a_write_the_stopped_replica_did_not_confirm(
    serve: Callable[[str], Site], redis_factory: RedisFactory
) -> None:
    master = redis_factory()
    replica = redis_factory("--replicaof", HOST, str(master.port))
    wait_for(lambda: replica_online(master), 10, "replica in sync")
    site = serve(f"{master.url}?wait_for_replicas=1&wait_timeout=0.2")
    assert site.get("/write?key=a").status_code == 200
    key = f"{store_key(site.session_id())}"
    assert replica.client().get(key) is not None

    replica.pause()
    try:
        refused = site.get("/write?key=b")
        assert refused.status_code == 503  # never a 2xx for an unconfirmed write
        assert site.get("/read").status_code == 200  # reads wait for no replica
        assert requests.get(site.server.url + "write?key=c", timeout=10).status_code == 503
    finally:
        replica.resume()
    wait_for(lambda: replica_online(master), 10, "replica caught up")
    assert site.get("/write?key=d").status_code == 200
    assert replica.client().get(key) is not None
    assert "replicas within 0.2 s" in site.server.output()


# -- in-process: refused writes, degrade, settings, command line ----------------------


def test_writes_refused_without_a_replica_log_one_traceback_then_counts_then_the_end(
    redis_factory: RedisFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The replica gone (as after a failover), every write is a 503: logged as an outage."""
    master = redis_factory()
    replica = redis_factory("--replicaof", HOST, str(master.port))
    wait_for(lambda: replica_online(master), 10, "replica in sync")
    store = RedisStore(master.url, wait_for_replicas=1, wait_timeout=0.05)
    middleware = SessionMiddleware(session_app(ROUTES), SECRET, store=store)
    clock = FakeClock(0.0)
    middleware.refusals.clock = clock
    client = Client(middleware)
    assert client.get("/set").status_code == 200
    caplog.set_level(logging.INFO, logger="wsgi_session")

    replica.kill()
    statuses = [client.get("/set").status_code for _ in range(12)]
    clock.advance(middleware.refusals.interval)
    statuses += [client.get("/set").status_code for _ in range(3)]
    assert client.get("/read").status_code == 200  # reads wait for no replica
    replica.start()
    wait_for(lambda: replica_online(master), 10, "replica back in sync")
    assert client.get("/set").status_code == 200
    assert client.get("/set").status_code == 200

    assert statuses == [503] * 15
    records = [r for r in caplog.records if r.name == "wsgi_session"]
    assert [r.exc_info is not None for r in records] == [True, False, False], records
    first, summary, recovered = (r.getMessage() for r in records)
    assert "session not saved; answering 503" in first
    assert "still refusing writes: 12 more requests affected (13 in 60 s" in summary
    assert "replicas within 0.05 s" in summary
    assert "acknowledges writes again" in recovered and "15 requests were affected" in recovered
    store.close()


def test_outage_under_degrade_serves_an_empty_session(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore(redis_server.url, timeout=0.2)
    client = Client(
        SessionMiddleware(session_app(ROUTES), SECRET, store=store, on_store_error="degrade")
    )
    cookie = one_cookie(client.get("/set"))
    redis_server.pause()
    try:
        with caplog.at_level(logging.ERROR, logger="wsgi_session"):
            read = client.get("/read")
        assert (read.status_code, read.text, set_cookies(read)) == (200, "{}", [])
    finally:
        redis_server.resume()
    assert client.get("/read").text == "{'user': 'alice'}"
    assert client.get_cookie("session").value == cookie.value  # type: ignore[union-attr]
    store.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache:6379/0?key_prefix=app:",
        "rediss://:pw@cache?ssl_cert_reqs=none",
        "unix:///run/redis.sock",
        "redis+sentinel://s1:26379,s2:26379/mymaster",
        "redis+cluster://n1:7000,n2:7000",
    ],
)
def test_store_urls(url: str) -> None:
    store = store_from_url(url)
    assert isinstance(store, RedisStore)
    assert "pw" not in repr(store)


def test_the_schemes_agree() -> None:
    assert REDIS_SCHEMES == redis_module.SCHEMES


def test_bad_redis_url_names_the_setting_and_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_env(
            {"WSGI_SESSION_SECRET_KEY": SECRET, "WSGI_SESSION_STORE": "redis://:hunter2@h?x=1"}
        )
    message = str(raised.value)
    assert "WSGI_SESSION_STORE='redis://:***@h?x=1'" in message
    assert "unknown option 'x'" in message
    assert "hunter2" not in message


def test_settings_against_a_real_server(redis_factory: RedisFactory) -> None:
    server = redis_factory(acl=True)
    url = f"redis://{ACL_USER}:{ACL_PASSWORD}@{server.address}/0?key_prefix=env:"
    environ = {"WSGI_SESSION_SECRET_KEY": SECRET, "WSGI_SESSION_STORE": url}
    client = Client(from_env(session_app(ROUTES), environ))
    one_cookie(client.get("/set"))
    assert client.get("/read").text == "{'user': 'alice'}"
    assert len(list(server.client().scan_iter(match="env:*"))) == 1
    shown = load_env(environ).effective()["WSGI_SESSION_STORE"]
    assert ACL_PASSWORD not in shown
    assert shown.startswith(f"redis://{ACL_USER}:***@{server.address}/0")


def test_check_reaches_redis(
    run: Callable[..., tuple[int, str, str]], redis_factory: RedisFactory
) -> None:
    server = redis_factory(acl=True)
    url = f"redis://{ACL_USER}:{ACL_PASSWORD}@{server.address}"
    status, out, _ = run("check", SECRET_KEY=SECRET, STORE=url)
    assert status == 0
    assert f"the store answered (redis://{ACL_USER}:***@{server.address})" in out
    assert ACL_PASSWORD not in out

    status, out, err = run("check", SECRET_KEY=SECRET, STORE=url.replace(ACL_PASSWORD, "wrong"))
    assert status == 1
    assert "AuthenticationError" in err and "wrong" not in err + out
    server.kill()
    status, _, err = run("check", SECRET_KEY=SECRET, STORE=url)
    assert status == 1
    assert server.address in err and ACL_PASSWORD not in err


@pytest.mark.parametrize(
    ("password", "secrets"),
    [
        ("p/w", ["user:p", "p/w", "w@"]),
        ("p@ss/word", ["p@ss", "ss/word"]),
        ("hun/ter2", ["hun", "ter2"]),
        ("hu@nt?er2", ["hu@", "nt?er2", "er2"]),
    ],
)
def test_a_password_with_a_slash_is_never_shown(
    run: Callable[..., tuple[int, str, str]], password: str, secrets: list[str]
) -> None:
    # Written as is, not percent-encoded: the URL parser takes the password's
    # "/" or "?" for the end of the host, so the password lands in the path or query.
    url = f"redis://user:{password}@host:6379/0"
    with pytest.raises(ConfigurationError) as raised:
        load_env({"WSGI_SESSION_SECRET_KEY": SECRET, "WSGI_SESSION_STORE": url})
    status, out, err = run("check", SECRET_KEY=SECRET, STORE=url)

    assert status != 0 and "WSGI_SESSION_STORE" in err
    for shown in (str(raised.value), out + err):
        assert "percent-encode" in shown
        for secret in secrets:
            assert secret not in shown


@pytest.mark.parametrize("scheme", REDIS_SCHEMES)
def test_gc_has_nothing_to_do_on_redis(
    run: Callable[..., tuple[int, str, str]], scheme: str
) -> None:
    url = {
        "unix": "unix://:pw@/run/redis.sock",
        "redis+sentinel": "redis+sentinel://:pw@s1:26379/mymaster",
    }.get(scheme, f"{scheme}://:pw@cache:6379")
    status, out, _ = run("gc", STORE=url)
    assert status == 0
    assert out.startswith("nothing to purge in ")
    assert "Redis expires records by itself" in out
    assert ":***@" in out and ":pw@" not in out


def test_a_store_error_is_store_unavailable(redis_server: RedisServer) -> None:
    redis_server.kill()
    store = RedisStore(redis_server.url)
    with pytest.raises(StoreUnavailable):
        store.delete("k")
