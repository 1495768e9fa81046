"""Sessions in real memcached servers, seen over HTTP: outages, recovery, a cluster."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from helpers import ROUTES, SECRET, one_cookie, session_app, set_cookies, store_key
from memcached_server import MemcachedFactory, MemcachedServer
from werkzeug.test import Client

from wsgi_session import MemcachedStore, SessionMiddleware


def client_for(store: MemcachedStore, **options: Any) -> Client:
    return Client(SessionMiddleware(session_app(ROUTES), SECRET, store=store, **options))


def test_sessions_round_trip_through_memcached(memcached_server: MemcachedServer) -> None:
    client = client_for(MemcachedStore(memcached_server.address, key_prefix="app:"))

    cookie = one_cookie(client.get("/set"))

    assert client.get("/read").text == "{'user': 'alice'}"
    with memcached_server.client() as raw:
        assert raw.get(f"app:{cookie.session_id}") is None  # never keyed by the id itself
        record = raw.get(f"app:{store_key(cookie.session_id)}")
    assert record is not None and record.endswith(b'{"user":"alice"}')
    assert client.get("/read").text == "{'user': 'alice'}"


def test_outage_under_fail_is_a_503_then_recovers_without_a_restart(
    memcached_server: MemcachedServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(MemcachedStore(memcached_server.address, timeout=0.2))
    client.get("/set")

    memcached_server.kill()
    with caplog.at_level(logging.ERROR, logger="wsgi_session"):
        # "fail": the app sees the error; when it lets it through, the answer is a 503
        assert client.get("/read").status_code == 503
        written = Client(client.application).get("/set")  # a new visitor's write
    assert written.status_code == 503
    assert set_cookies(written) == []
    assert any("answering 503" in r.getMessage() for r in caplog.records)

    memcached_server.start()  # same port, empty cache
    assert client.get("/read").text == "{}"  # the old session is gone with the cache
    one_cookie(client.get("/set"))
    assert client.get("/read").text == "{'user': 'alice'}"


def test_outage_under_degrade_serves_an_empty_session_and_keeps_the_cookie(
    memcached_server: MemcachedServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemcachedStore(memcached_server.address, timeout=0.2)
    client = client_for(store, on_store_error="degrade")
    cookie = one_cookie(client.get("/set"))

    memcached_server.pause()  # unresponsive rather than gone: the data survives
    with caplog.at_level(logging.ERROR, logger="wsgi_session"):
        read = client.get("/read")
        written = client.get("/set2")
    assert (read.status_code, read.text) == (200, "{}")
    assert written.status_code == 200
    assert set_cookies(read) == set_cookies(written) == []  # the client keeps its cookie
    assert any("dropped" in r.getMessage() for r in caplog.records)

    memcached_server.resume()
    assert client.get("/read").text == "{'user': 'alice'}"
    assert client.get_cookie("session").value == cookie.value  # type: ignore[union-attr]


def test_a_cluster_node_dying_resets_only_its_sessions(
    memcached_factory: MemcachedFactory,
) -> None:
    cluster = [memcached_factory() for _ in range(3)]
    store = MemcachedStore([node.address for node in cluster], dead_timeout=60, timeout=0.2)
    middleware = SessionMiddleware(session_app(ROUTES), SECRET, store=store)
    clients = [Client(middleware) for _ in range(30)]
    for client in clients:
        client.get("/set")
    home = {id(client): node_of(cluster, store, client) for client in clients}
    dead = cluster[1]
    assert any(node is dead for node in home.values())

    dead.kill()

    for client in clients:
        response = client.get("/read")
        assert response.status_code == 200
        expected = "{}" if home[id(client)] is dead else "{'user': 'alice'}"
        assert response.text == expected
    for client in clients:  # the reset sessions start over on the live nodes
        client.get("/set")
        assert client.get("/read").text == "{'user': 'alice'}"


def node_of(cluster: list[MemcachedServer], store: MemcachedStore, client: Client) -> Any:
    """The node holding ``client``'s session record."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    middleware: Any = client.application
    key = store.key_prefix + middleware.backend.store_key(cookie.value.split(".")[0])
    for node in cluster:
        with node.client() as raw:
            if raw.get(key) is not None:
                return node
    raise AssertionError("session record on no node")
