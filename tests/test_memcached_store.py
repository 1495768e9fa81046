"""MemcachedStore against real memcached processes."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import store_contract as contract
from memcached_server import MemcachedFactory, MemcachedServer, free_port
from store_contract import closing_stores, data, sockets_to, version

from wsgi_session.errors import (
    ConfigurationError,
    SessionTooLarge,
    StoreUnavailable,
)
from wsgi_session.stores.base import Store
from wsgi_session.stores.memcached import MemcachedStore

DAY = 24 * 3600
DEAD_TIMEOUT = 0.5


def remaining_ttl(server: MemcachedServer, key: str) -> int:
    """Seconds until the server expires ``key``, from the meta-get ``t`` flag.

    memcached's clock ticks once a second and may lag: allow a few seconds.
    """
    with server.client() as client:
        reply = client.raw_command(f"mg {key} t".encode())
    flags = dict((token[:1], token[1:]) for token in reply.split()[1:])
    return int(flags[b"t"])


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


StoreFactory = Callable[..., MemcachedStore]


@pytest.fixture
def make_store() -> Iterator[StoreFactory]:
    """Build stores that close their connections after the test."""
    yield from closing_stores(MemcachedStore)


@pytest.fixture
def store(
    make_store: StoreFactory, shared_memcached: MemcachedServer, prefix: str
) -> MemcachedStore:
    return make_store(shared_memcached.address, key_prefix=prefix)


# Construction ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ("cache1:11311", [("cache1", 11311)]),
        ("cache1", [("cache1", 11211)]),
        ("cache1:1, cache2:2", [("cache1", 1), ("cache2", 2)]),
        (["cache1:1", "cache2:2"], [("cache1", 1), ("cache2", 2)]),
        ([("cache1", 1), ("cache2", 2)], [("cache1", 1), ("cache2", 2)]),
        ("[::1]:11311", [("::1", 11311)]),
    ],
)
def test_server_addresses(servers: object, expected: list[tuple[str, int]]) -> None:
    assert list(MemcachedStore(servers).addresses) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"servers": ""}, "servers"),
        ({"servers": []}, "servers"),
        ({"servers": "cache1:port"}, "servers"),
        ({"servers": "cache1:0"}, "servers"),
        ({"servers": "cache1:65536"}, "servers"),
        ({"servers": "cache 1:11211"}, "servers"),
        ({"servers": [("cache1", "11211")]}, "servers"),
        ({"servers": "cache1:1,cache1:1"}, "servers"),
        ({"key_prefix": "my app:"}, "key_prefix"),
        ({"key_prefix": "appé:"}, "key_prefix"),
        ({"key_prefix": "app\n"}, "key_prefix"),
        ({"key_prefix": "p" * 187}, "key_prefix"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "1"}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"connect_timeout": float("nan")}, "connect_timeout"),
        ({"dead_timeout": 0}, "dead_timeout"),
        ({"max_pool_size": 0}, "max_pool_size"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict[str, object], setting: str) -> None:
    kwargs = {"servers": "127.0.0.1:11211", **kwargs}
    with pytest.raises(ConfigurationError, match=f"MemcachedStore {setting}"):
        MemcachedStore(**kwargs)  # type: ignore[arg-type]


def test_no_connection_before_first_use(
    make_store: StoreFactory, memcached_server: MemcachedServer
) -> None:
    store = make_store(memcached_server.address)
    assert sockets_to(memcached_server.port) == []
    store.load("k")
    assert len(sockets_to(memcached_server.port)) == 1


def test_is_a_store(store: MemcachedStore) -> None:
    assert isinstance(store, Store)


# Records ----------------------------------------------------------------------


def test_round_trip(store: MemcachedStore) -> None:
    contract.check_round_trip(store, b"\x00\xff binary\r\nEND\r\n")  # protocol terminators inside


def test_load_missing(store: MemcachedStore) -> None:
    assert store.load("missing") is None


def test_create_conflicts_with_existing_record(store: MemcachedStore) -> None:
    contract.check_create_conflicts_with_existing_record(store)


def test_compare_and_set(store: MemcachedStore) -> None:
    contract.check_compare_and_set(store)


def test_compare_and_set_on_deleted_record(store: MemcachedStore) -> None:
    contract.check_compare_and_set_on_deleted_record(store)


def test_concurrent_compare_and_set_loses_no_update(
    make_store: StoreFactory, shared_memcached: MemcachedServer, prefix: str
) -> None:
    # More threads than pooled connections: the extra ones get their own.
    store = make_store(shared_memcached.address, key_prefix=prefix, max_pool_size=2)
    contract.check_concurrent_compare_and_set_loses_no_update(store)
    assert 1 <= len(sockets_to(shared_memcached.port)) <= 2


def test_delete(store: MemcachedStore) -> None:
    contract.check_delete(store)


def test_bad_arguments(store: MemcachedStore) -> None:
    contract.check_bad_arguments(store)


# Expiry -----------------------------------------------------------------------


def test_short_ttl_expires(store: MemcachedStore) -> None:
    store.save("k", b"v", ttl=1)
    assert store.load("k") is not None
    assert wait_until(lambda: store.load("k") is None)


@pytest.mark.parametrize("ttl", [0, -5])
def test_ttl_must_be_positive(store: MemcachedStore, ttl: int) -> None:
    # memcached would read 0 as "never expire".
    with pytest.raises(ValueError, match="ttl"):
        store.save("k", b"v", ttl=ttl)
    assert store.load("k") is None


@pytest.mark.parametrize("ttl", [60, 30 * DAY, 30 * DAY + 1, 60 * DAY, 400 * DAY])
def test_ttl_persists_and_expires_when_due(
    store: MemcachedStore, shared_memcached: MemcachedServer, prefix: str, ttl: int
) -> None:
    # Over 30 days memcached reads the expiry as a Unix time; sent as plain
    # seconds it would be a date in 1970 and the record would be gone at once.
    assert store.save("k", b"v", ttl=ttl) is True
    assert store.load("k") is not None
    assert remaining_ttl(shared_memcached, prefix + "k") == pytest.approx(ttl, abs=5)


def test_compare_and_set_sets_the_new_ttl(
    store: MemcachedStore, shared_memcached: MemcachedServer, prefix: str
) -> None:
    store.save("k", b"v", ttl=60)
    token = version(store, "k")
    store.save("k", b"v", ttl=60 * DAY, version=token)
    assert remaining_ttl(shared_memcached, prefix + "k") == pytest.approx(60 * DAY, abs=5)


# Keys and sizes -----------------------------------------------------------------


def test_longest_key(store: MemcachedStore, prefix: str) -> None:
    key = "k" * (250 - len(prefix))
    assert store.save(key, b"v", ttl=60) is True
    assert store.load(key) is not None


def test_key_too_long(store: MemcachedStore, prefix: str) -> None:
    key = "k" * (251 - len(prefix))
    with pytest.raises(ValueError, match="251 bytes"):
        store.save(key, b"v", ttl=60)
    with pytest.raises(ValueError, match="251 bytes"):
        store.load(key)


@pytest.mark.parametrize("key", ["a b", "a\tb", "a\r\nb", "clé", "a\x00b", "a\x7fb", "a\ud800b"])
def test_key_characters(store: MemcachedStore, key: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        store.save(key, b"v", ttl=60)


def test_oversize_value(make_store: StoreFactory, memcached_factory: MemcachedFactory) -> None:
    server = memcached_factory()  # memcached's default item size limit: 1 MB
    store = make_store(server.address)
    with pytest.raises(SessionTooLarge, match="2000000 bytes") as raised:
        store.save("k", b"x" * 2_000_000, ttl=60)
    assert isinstance(raised.value, ValueError)
    assert store.load("k") is None
    assert store.save("k", b"small", ttl=60) is True


def test_item_size_is_the_servers_limit(
    make_store: StoreFactory, memcached_factory: MemcachedFactory
) -> None:
    store = make_store(memcached_factory(item_size="4m").address)
    assert store.save("k", b"x" * 2_000_000, ttl=60) is True
    assert data(store, "k") == b"x" * 2_000_000


# Outages ----------------------------------------------------------------------


def test_nothing_listening(make_store: StoreFactory) -> None:
    address = f"127.0.0.1:{free_port()}"
    store = make_store(address)
    with pytest.raises(StoreUnavailable, match=address):
        store.load("k")


@contract.each_operation
def test_outage_and_recovery(
    make_store: StoreFactory,
    memcached_server: MemcachedServer,
    operation: Callable[[MemcachedStore, object], object],
) -> None:
    store = make_store(memcached_server.address)
    error = contract.check_outage_and_recovery(store, memcached_server, operation)
    assert isinstance(error.__cause__, OSError)


def test_restart_between_requests(
    make_store: StoreFactory, memcached_server: MemcachedServer
) -> None:
    store = make_store(memcached_server.address)
    store.save("k", b"v", ttl=60)
    (before,) = sockets_to(memcached_server.port)
    memcached_server.restart()  # the pooled connection is now closed by the server
    assert store.save("k", b"v2", ttl=60) is True
    assert data(store, "k") == b"v2"
    assert before.fileno() == -1


def test_unanswered_request_times_out(
    make_store: StoreFactory, memcached_server: MemcachedServer
) -> None:
    store = make_store(memcached_server.address, timeout=0.2)
    store.save("k", b"v", ttl=60)
    memcached_server.pause()
    with pytest.raises(StoreUnavailable, match=memcached_server.address) as raised:
        store.load("k")
    assert isinstance(raised.value.__cause__, TimeoutError)
    memcached_server.resume()
    assert data(store, "k") == b"v"


def test_close(make_store: StoreFactory, memcached_server: MemcachedServer) -> None:
    store = make_store(memcached_server.address)
    store.save("k", b"v", ttl=60)
    assert len(sockets_to(memcached_server.port)) == 1
    store.close()
    assert sockets_to(memcached_server.port) == []
    assert data(store, "k") == b"v"


@pytest.fixture
def cluster(memcached_factory: MemcachedFactory) -> list[MemcachedServer]:
    return [memcached_factory() for _ in range(3)]


def owners(cluster: list[MemcachedServer], keys: list[str]) -> dict[str, int]:
    """Which node of the cluster holds each key, asking the nodes directly."""
    found = {}
    for index, server in enumerate(cluster):
        with server.client() as client:
            found.update({key: index for key in keys if client.get(key) is not None})
    return found


def test_cluster_spreads_keys(make_store: StoreFactory, cluster: list[MemcachedServer]) -> None:
    store = make_store([server.address for server in cluster])
    keys = [f"k{i}" for i in range(90)]
    for key in keys:
        assert store.save(key, key.encode(), ttl=60) is True
    where = owners(cluster, keys)
    assert sorted(where) == sorted(keys)  # each key on exactly one node...
    assert set(where.values()) == {0, 1, 2}  # ...and every node holds some
    for key in keys:
        assert data(store, key) == key.encode()


def test_cluster_with_a_dead_node(
    make_store: StoreFactory, cluster: list[MemcachedServer], caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store([server.address for server in cluster], dead_timeout=DEAD_TIMEOUT)
    keys = [f"k{i}" for i in range(60)]
    for key in keys:
        store.save(key, key.encode(), ttl=60)
    where = owners(cluster, keys)
    dead = cluster[0]
    lost = [key for key in keys if where[key] == 0]
    kept = [key for key in keys if where[key] != 0]
    dead.kill()

    # Even the request that finds the node dead succeeds: its key moves to a
    # live node at once (logged), and those sessions start over.
    with caplog.at_level(logging.ERROR, logger="wsgi_session"):
        assert store.load(lost[0]) is None
    assert [dead.address in r.getMessage() for r in caplog.records] == [True]
    for key in lost:
        assert store.load(key) is None
        assert store.save(key, b"new", ttl=60) is True
        assert data(store, key) == b"new"
    for key in kept:
        assert data(store, key) == key.encode()

    # After dead_timeout the node is tried again; still down, it is skipped again.
    time.sleep(DEAD_TIMEOUT + 0.1)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="wsgi_session"):
        assert data(store, lost[0]) == b"new"
    assert len(caplog.records) == 1

    dead.start()
    time.sleep(DEAD_TIMEOUT + 0.1)
    assert store.load(lost[0]) is None  # back on its node, which restarted empty
    assert store.save(lost[0], b"home", ttl=60) is True
    with dead.client() as client:
        assert client.get(lost[0]) == b"home"
    for key in kept:
        assert data(store, key) == key.encode()


def test_cluster_all_down(make_store: StoreFactory, cluster: list[MemcachedServer]) -> None:
    store = make_store([server.address for server in cluster], dead_timeout=60)
    for server in cluster:
        server.kill()
    with pytest.raises(StoreUnavailable, match="every memcached server is down"):
        store.load("k")


# Sockets ----------------------------------------------------------------------


def test_no_delay_on_every_connection(
    make_store: StoreFactory, cluster: list[MemcachedServer]
) -> None:
    store = make_store([server.address for server in cluster])
    for i in range(30):
        store.save(f"k{i}", b"v", ttl=60)
    for server in cluster:
        (connection,) = sockets_to(server.port)
        assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_fork_gets_its_own_connections(
    make_store: StoreFactory, memcached_server: MemcachedServer
) -> None:
    store = make_store(memcached_server.address)
    contract.check_fork_gets_its_own_connections(store, memcached_server.port)
