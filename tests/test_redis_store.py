"""RedisStore against real redis-server processes: standalone, TLS, ACL, Sentinel, Cluster."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import store_contract as contract
from redis_server import (
    ACL_PASSWORD,
    ACL_USER,
    FAILOVER_TIMEOUT,
    HOST,
    Cluster,
    RedisFactory,
    RedisServer,
    SentinelSet,
    make_tls_files,
    replica_online,
    wait_for,
)
from store_contract import Forked, closing_stores, data, sockets_to, version

from wsgi_session import RedisStore
from wsgi_session.errors import ConfigurationError, StoreUnavailable, StoreWriteFailed
from wsgi_session.stores.base import Store

DAY = 24 * 3600

StoreFactory = Callable[..., RedisStore]


@pytest.fixture
def make_store() -> Iterator[StoreFactory]:
    """Build stores that close their connections after the test."""
    yield from closing_stores(RedisStore)


@pytest.fixture
def store(make_store: StoreFactory, shared_redis: RedisServer, prefix: str) -> RedisStore:
    return make_store(shared_redis.url, key_prefix=prefix)


# URLs and construction -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://cache", "redis://cache:6379"),
        ("redis://cache:6380/2", "redis://cache:6380/2"),
        ("redis://:hunter2@cache/0", "redis://:***@cache:6379"),
        ("redis://app:hunter2@[::1]:6380/1", "redis://app:***@[::1]:6380/1"),
        ("rediss://cache?ssl_ca_certs=/ca.pem", "rediss://cache:6379"),
        ("unix:///run/redis.sock?db=3", "unix:///run/redis.sock?db=3"),
        (
            "redis+sentinel://s1,s2:26380/mymaster/1",
            "redis+sentinel://s1:26379,s2:26380/mymaster/1",
        ),
        ("redis+cluster://u:p%40ss@n1:7000,n2:7001", "redis+cluster://u:***@n1:7000,n2:7001"),
    ],
)
def test_url_forms(url: str, shown: str) -> None:
    store = RedisStore(url, key_prefix="app:")
    assert store.where == shown
    assert repr(store) == f"RedisStore({shown!r}, key_prefix='app:')"


def test_url_query_options() -> None:
    store = RedisStore.from_url(
        "redis://cache/0?key_prefix=s:&timeout=0.25&connect_timeout=0.1"
        "&wait_for_replicas=1&wait_timeout=0.2&max_connections=8"
    )
    assert (store.key_prefix, store.timeout, store.connect_timeout) == ("s:", 0.25, 0.1)
    assert (store.wait_for_replicas, store.wait_timeout, store.max_connections) == (1, 0.2, 8)
    assert repr(store) == "RedisStore('redis://cache:6379', key_prefix='s:', wait_for_replicas=1)"


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("http://cache", {}, "scheme must be one of"),
        ("redis://", {}, "host"),
        ("redis://cache:0", {}, "host"),
        ("redis://cache:99999", {}, "host"),
        ("redis://a,b", {}, "names one server"),
        ("redis://cache/db", {}, "database number"),
        ("redis://cache?db=2", {}, "in its path"),
        ("redis://cache?nope=1", {}, "unknown option 'nope'"),
        ("redis://cache?password=x", {}, "before the host"),
        ("redis://cache?timeout=1&timeout=2", {}, "twice"),
        ("redis://cache?timeout=soon", {}, "timeout cannot be"),
        ("redis://cache?ssl_ca_certs=/ca.pem", {}, "only with rediss://"),
        ("rediss://cache?ssl_cert_reqs=maybe", {}, "ssl_cert_reqs must be one of"),
        ("redis://cache#x", {}, "fragment"),
        ("redis://cache?timeout=1", {"timeout": 2}, "both in the URL and as an argument"),
        ("redis://cache", {"timeout": 0}, "timeout must be over 0"),
        ("redis://cache", {"connect_timeout": float("nan")}, "connect_timeout"),
        ("redis://cache", {"wait_for_replicas": -1}, "wait_for_replicas"),
        ("redis://cache", {"max_connections": 0}, "max_connections"),
        ("redis://cache", {"key_prefix": 5}, "key_prefix"),
        ("unix://host/sock", {}, "socket file"),
        ("redis+sentinel://s1:26379", {}, "service name"),
        ("redis+cluster://n1:7000/1", {}, "only database 0"),
        ("redis+cluster://n1:7000,n1:7000", {}, "more than once"),
    ],
)
def test_bad_configuration_fails_at_construction(
    url: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        RedisStore(url, **kwargs)  # type: ignore[arg-type]
    assert "RedisStore" in str(raised.value)


def test_secrets_never_shown(make_store: StoreFactory, redis_factory: RedisFactory) -> None:
    server = redis_factory(acl=True)
    store = make_store(f"redis://{ACL_USER}:wrong-{ACL_PASSWORD}@{server.address}")
    assert ACL_PASSWORD not in repr(store)
    with pytest.raises(ConfigurationError) as bad:
        RedisStore(f"redis://{ACL_USER}:{ACL_PASSWORD}@{server.address}?color=red")
    assert ACL_PASSWORD not in str(bad.value)
    with pytest.raises(StoreUnavailable, match="AuthenticationError") as raised:
        store.load("k")
    assert ACL_PASSWORD not in str(raised.value)
    assert str(raised.value).startswith(f"Redis redis://{ACL_USER}:***@{server.address}")


def test_not_a_url_or_client() -> None:
    with pytest.raises(ConfigurationError, match="redis-py client"):
        RedisStore(42)
    with pytest.raises(ConfigurationError, match="decode_responses=False"):
        RedisStore(redis.Redis(decode_responses=True))


def test_no_connection_before_first_use(
    make_store: StoreFactory, redis_server: RedisServer
) -> None:
    store = make_store(redis_server.url)
    assert sockets_to(redis_server.port) == []
    store.load("k")
    assert len(sockets_to(redis_server.port)) == 1


def test_is_a_store(store: RedisStore) -> None:
    assert isinstance(store, Store)


def test_a_given_client_is_used_as_it_is(shared_redis: RedisServer, prefix: str) -> None:
    client = shared_redis.client()
    store = RedisStore(client, key_prefix=prefix)
    assert repr(store) == f"RedisStore(client, key_prefix={prefix!r})"
    assert store.save("k", b"v", ttl=60) is True
    assert client.get(prefix + "k") is not None
    store.close()  # the caller's client stays open
    assert data(store, "k") == b"v"
    client.close()


# Records ----------------------------------------------------------------------------


def test_round_trip(store: RedisStore, shared_redis: RedisServer, prefix: str) -> None:
    value = b"\x00\xff binary\r\n$3\r\nEND\r\n"
    contract.check_round_trip(store, value)
    raw = shared_redis.client().get(prefix + "k")
    assert raw is not None and raw.endswith(value) and len(raw) == len(value) + 8


def test_load_missing(store: RedisStore) -> None:
    assert store.load("missing") is None


def test_create_conflicts_with_existing_record(store: RedisStore) -> None:
    contract.check_create_conflicts_with_existing_record(store)


def test_compare_and_set(store: RedisStore) -> None:
    contract.check_compare_and_set(store)


def test_compare_and_set_on_deleted_record(store: RedisStore) -> None:
    contract.check_compare_and_set_on_deleted_record(store)


def test_a_record_and_its_owner_entry_in_one_script(store: RedisStore) -> None:
    contract.check_indexed_writes(store)


def test_script_flushed_from_the_server(store: RedisStore, shared_redis: RedisServer) -> None:
    store.save("k", b"v1", ttl=60)
    shared_redis.client().script_flush()
    assert store.save("k", b"v2", ttl=60, version=version(store, "k")) is True
    assert store.save("k", b"v3", ttl=60, version=version(store, "k")) is True
    assert data(store, "k") == b"v3"


def command_calls(observer: redis.Redis) -> dict[str, int]:
    """How often the server ran each command (a script's own calls included)."""
    stats = observer.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}


def calls_during(server: RedisServer, action: Callable[[], object]) -> dict[str, int]:
    """The commands the server ran during ``action`` (not INFO, not replica acks)."""
    with server.client() as observer:
        before = command_calls(observer)
        action()
        after = command_calls(observer)
    return {
        name: count - before.get(name, 0)
        for name, count in after.items()
        if count != before.get(name, 0) and name not in ("info", "replconf")
    }


def test_each_operation_is_one_command(store: RedisStore, shared_redis: RedisServer) -> None:
    store.save("warm", b"v", ttl=60)
    store.save("warm", b"v", ttl=60, version=version(store, "warm"))  # script cached
    assert calls_during(shared_redis, lambda: store.save("k", b"v1", ttl=60)) == {"set": 1}
    token = store.load("k")
    assert calls_during(shared_redis, lambda: store.load("k")) == {"get": 1}
    assert token is not None
    cas = calls_during(shared_redis, lambda: store.save("k", b"v2", ttl=60, version=token[1]))
    assert cas == {"evalsha": 1, "getrange": 1, "set": 1}  # one command; the script's two
    assert calls_during(shared_redis, lambda: store.delete("k")) == {"del": 1}


def test_concurrent_compare_and_set_loses_no_update(
    make_store: StoreFactory, shared_redis: RedisServer, prefix: str
) -> None:
    contract.check_concurrent_compare_and_set_loses_no_update(
        make_store(shared_redis.url, key_prefix=prefix)
    )


def test_delete(store: RedisStore) -> None:
    contract.check_delete(store)


def test_bad_arguments(store: RedisStore) -> None:
    contract.check_bad_arguments(store)
    with pytest.raises(ValueError, match="ttl"):
        store.save("k", b"v", ttl=0)
    with pytest.raises(ValueError, match="key"):
        store.load("")
    assert store.load("k") is None


# Expiry -----------------------------------------------------------------------------


def test_short_ttl_expires(store: RedisStore) -> None:
    store.save("k", b"v", ttl=1)
    assert store.load("k") is not None
    wait_for(lambda: store.load("k") is None, 5, "record expired")


@pytest.mark.parametrize("ttl", [60, 30 * DAY + 1, 400 * DAY])
def test_ttl_is_set_with_the_write(
    store: RedisStore, shared_redis: RedisServer, prefix: str, ttl: int
) -> None:
    store.save("k", b"v", ttl=ttl)
    assert shared_redis.client().pttl(prefix + "k") == pytest.approx(ttl * 1000, abs=2000)
    store.save("k", b"v2", ttl=2 * ttl, version=version(store, "k"))
    assert shared_redis.client().pttl(prefix + "k") == pytest.approx(2 * ttl * 1000, abs=2000)


# Outages ------------------------------------------------------------------------------


def test_nothing_listening(make_store: StoreFactory, redis_server: RedisServer) -> None:
    redis_server.kill()
    store = make_store(redis_server.url)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=redis_server.address) as raised:
        store.load("k")
    assert isinstance(raised.value.__cause__, redis.ConnectionError)
    assert time.monotonic() - started < 1


@contract.each_operation
def test_outage_and_recovery(
    make_store: StoreFactory,
    redis_server: RedisServer,
    operation: Callable[[RedisStore, object], object],
) -> None:
    contract.check_outage_and_recovery(make_store(redis_server.url), redis_server, operation)


def test_restart_between_requests(make_store: StoreFactory, redis_server: RedisServer) -> None:
    store = make_store(redis_server.url)
    store.save("k", b"v", ttl=60)
    assert len(sockets_to(redis_server.port)) == 1
    redis_server.kill()
    redis_server.start()  # the pooled connection is now closed by the server
    assert store.save("k", b"v2", ttl=60) is True  # retried once on a new connection
    assert data(store, "k") == b"v2"


def test_unanswered_request_times_out(make_store: StoreFactory, redis_server: RedisServer) -> None:
    store = make_store(redis_server.url, timeout=0.2)
    store.save("k", b"v", ttl=60)
    redis_server.pause()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="Timeout"):
        store.load("k")
    assert time.monotonic() - started < 1
    redis_server.resume()
    assert data(store, "k") == b"v"


def test_an_interrupted_command_leaves_no_reply_for_the_next_one(
    make_store: StoreFactory, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake, because no server can cause it: an exception (Ctrl-C, a thread's
    # asynchronous exception) landing after a command went out and before its
    # reply was read. The reply left on that socket must not answer a later command.
    store = make_store(redis_server.url)
    store.save("a", b"A", ttl=60)
    store.save("b", b"B", ttl=60)

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(redis.Connection, "read_response", interrupted)
        with pytest.raises(KeyboardInterrupt):
            store.load("a")
    assert data(store, "b") == b"B"
    assert len(sockets_to(redis_server.port)) == 1  # the interrupted one was replaced


def test_connections_are_reused_and_bounded_by_the_concurrency(
    make_store: StoreFactory, redis_server: RedisServer
) -> None:
    store = make_store(redis_server.url)
    for index in range(20):
        store.save(f"k{index}", b"v", ttl=60)
        assert data(store, f"k{index}") == b"v"
    assert len(sockets_to(redis_server.port)) == 1
    contract.check_concurrent_compare_and_set_loses_no_update(store)  # eight threads
    assert 1 <= len(sockets_to(redis_server.port)) <= 8  # at most one per thread at once


def test_close(make_store: StoreFactory, redis_server: RedisServer) -> None:
    store = make_store(redis_server.url)
    store.save("k", b"v", ttl=60)
    assert len(sockets_to(redis_server.port)) == 1
    store.close()
    assert sockets_to(redis_server.port) == []
    assert data(store, "k") == b"v"


def test_fork_gets_its_own_connections(make_store: StoreFactory, redis_server: RedisServer) -> None:
    store = make_store(redis_server.url)
    contract.check_fork_gets_its_own_connections(store, redis_server.port)


def test_forked_processes_write_different_version_tokens(
    make_store: StoreFactory, redis_server: RedisServer
) -> None:
    # Two processes drawing the same tokens could hand a record back the token a
    # concurrent writer expects, and its compare-and-set would overwrite a write.
    store = make_store(redis_server.url)

    def child() -> list[str]:
        for index in range(5):
            store.save(f"child-{index}", b"data", ttl=60)
        return [repr(version(store, f"child-{index}")) for index in range(5)]

    forked = Forked(child)
    for index in range(5):
        store.save(f"parent-{index}", b"data", ttl=60)
    parent = {repr(version(store, f"parent-{index}")) for index in range(5)}
    assert parent.isdisjoint(forked.result())


# TLS, ACL, unix socket -------------------------------------------------------------


def test_tls(make_store: StoreFactory, redis_factory: RedisFactory, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    server = redis_factory(tls=tls)
    url = (
        f"rediss://{server.address}/0?ssl_ca_certs={tls.ca}"
        f"&ssl_certfile={tls.client_cert}&ssl_keyfile={tls.client_key}"
    )
    store = make_store(url, key_prefix="tls:")
    assert store.save("k", b"over TLS", ttl=60) is True
    assert data(store, "k") == b"over TLS"
    assert server.client().get("tls:k") is not None

    plain = make_store(f"redis://{server.address}", timeout=0.3)
    with pytest.raises(StoreUnavailable):
        plain.load("k")  # a TLS port does not speak plain Redis
    untrusted = make_store(
        f"rediss://{server.address}?ssl_certfile={tls.client_cert}&ssl_keyfile={tls.client_key}"
    )
    with pytest.raises(StoreUnavailable, match="certificate"):
        untrusted.load("k")  # the test CA is not in the system's trust store


def test_acl_user(make_store: StoreFactory, redis_factory: RedisFactory) -> None:
    server = redis_factory(acl=True)
    store = make_store(f"redis://{ACL_USER}:{ACL_PASSWORD}@{server.address}/1")
    assert store.save("k", b"v", ttl=60) is True
    assert server.client(db=1).get("k") is not None
    anonymous = make_store(server.url)
    with pytest.raises(StoreUnavailable):
        anonymous.load("k")
    keyword = make_store(f"redis://{server.address}/1", username=ACL_USER, password=ACL_PASSWORD)
    assert data(keyword, "k") == b"v"
    assert ACL_PASSWORD not in repr(keyword)


def test_unix_socket(make_store: StoreFactory, redis_factory: RedisFactory, tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    redis_factory("--unixsocket", str(socket_path), "--unixsocketperm", "700")
    store = make_store(f"unix://{socket_path}?db=2")
    assert store.save("k", b"v", ttl=60) is True
    assert data(store, "k") == b"v"


# wait_for_replicas --------------------------------------------------------------------


@pytest.fixture
def replicated(redis_factory: RedisFactory) -> tuple[RedisServer, RedisServer]:
    master = redis_factory()
    replica = redis_factory("--replicaof", HOST, str(master.port))
    wait_for(lambda: replica_online(master), 10, "replica in sync")
    return master, replica


def test_wait_for_replicas(
    make_store: StoreFactory, replicated: tuple[RedisServer, RedisServer]
) -> None:
    master, replica = replicated
    store = make_store(master.url, wait_for_replicas=1, wait_timeout=0.3)
    assert store.save("k", b"v1", ttl=60) is True
    assert replica.client().get("k") is not None  # there as soon as the save returned
    assert store.save("k", b"v2", ttl=60, version=version(store, "k")) is True
    assert replica.client().get("k").endswith(b"v2")  # type: ignore[union-attr]
    assert store.save("k", b"v3", ttl=60) is False  # a refused create waits for nothing

    replica.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreWriteFailed, match="confirmed by 0 of 1 replicas"):
            store.save("k", b"v4", ttl=60, version=version(store, "k"))
        assert time.monotonic() - started < 1.5
        with pytest.raises(StoreWriteFailed):
            store.save("other", b"v", ttl=60)
        with pytest.raises(StoreWriteFailed):
            store.delete("k")  # a logout the replica may not have
    finally:
        replica.resume()
    store.save("k2", b"v", ttl=60)
    assert replica.client().get("k2") is not None


def test_wait_for_replicas_is_one_round_trip(
    make_store: StoreFactory, replicated: tuple[RedisServer, RedisServer]
) -> None:
    master, _ = replicated
    store = make_store(master.url, wait_for_replicas=1)
    store.save("k", b"v1", ttl=60)
    store.save("k", b"v2", ttl=60, version=version(store, "k"))  # script cached
    token = version(store, "k")
    calls = calls_during(master, lambda: store.save("k", b"v3", ttl=60, version=token))
    assert calls == {"evalsha": 1, "getrange": 1, "set": 1, "wait": 1}


# Sentinel -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    servers = SentinelSet(tmp_path_factory.mktemp("sentinel"))
    yield servers
    servers.stop()


def test_sentinel_failover(make_store: StoreFactory, sentinel_set: SentinelSet) -> None:
    store = make_store(sentinel_set.url, key_prefix="s:", wait_for_replicas=1, timeout=0.3)
    assert store.save("k", b"kept", ttl=60) is True
    assert sentinel_set.master_port() == sentinel_set.master.port

    sentinel_set.master.kill()
    with pytest.raises(StoreUnavailable):
        store.load("k")
    wait_for(
        lambda: sentinel_set.master_port() == sentinel_set.replica.port,
        FAILOVER_TIMEOUT,
        "sentinel promoted the replica",
    )

    def served() -> bool:
        try:
            return data(store, "k") == b"kept"
        except StoreUnavailable:  # Sentinel does not name the new master yet
            return False

    # The promoted replica had the record: wait_for_replicas made the save wait for it.
    wait_for(served, FAILOVER_TIMEOUT, "the store reached the new master")
    fresh = RedisStore(sentinel_set.url, key_prefix="s:")
    assert fresh.save("k", b"x", ttl=60, version=version(fresh, "k")) is True
    assert data(store, "k") == b"x"
    fresh.close()


# Cluster --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("cluster"))
    yield nodes
    nodes.stop()


def test_cluster_spreads_keys_and_survives_a_master_dying(
    make_store: StoreFactory, cluster: Cluster
) -> None:
    store = make_store(cluster.url, key_prefix="c:", wait_for_replicas=1, timeout=0.3)
    assert sockets_to(cluster.nodes[0].port) == []  # not even the slot map yet
    keys = [f"k{i}" for i in range(30)]
    for key in keys:
        assert store.save(key, key.encode(), ttl=60) is True
        assert store.save(key, b"2" + key.encode(), ttl=60, version=version(store, key)) is True
    owners = {key: cluster.owner(f"c:{key}".encode()) for key in keys}
    assert len(set(owners.values())) == 3  # every master holds some

    dead = owners[keys[0]]
    lost = [key for key in keys if owners[key] is dead]
    dead.kill()

    def served() -> bool:
        try:
            return data(store, lost[0]) == b"2" + lost[0].encode()
        except StoreUnavailable:
            return False

    wait_for(served, FAILOVER_TIMEOUT, "the replica took over the dead master's slots")
    for key in keys:  # none lost: every save waited for a replica
        assert data(store, key) == b"2" + key.encode()
    # The promoted master has no replica left: a write there cannot be confirmed.
    with pytest.raises(StoreWriteFailed, match="confirmed by 0 of 1"):
        store.save(lost[0], b"3", ttl=60, version=version(store, lost[0]))
    kept = [key for key in keys if owners[key] is not dead]
    assert store.save(kept[0], b"3", ttl=60, version=version(store, kept[0])) is True
    without_wait = make_store(cluster.url, key_prefix="c:")
    for key in keys:
        assert without_wait.save(key, b"4", ttl=60, version=version(store, key)) is True
        assert data(store, key) == b"4"
    wait_for(cluster.ready, FAILOVER_TIMEOUT, "cluster state ok")


def test_cluster_keys_with_a_plain_client(cluster: Cluster) -> None:
    nodes = [redis.cluster.ClusterNode(HOST, node.port) for node in cluster.live()[:1]]
    client = redis.cluster.RedisCluster(startup_nodes=nodes)
    store = RedisStore(client, key_prefix="given:")
    assert store.save("k", b"v", ttl=60) is True
    assert store.save("k", b"w", ttl=60, version=version(store, "k")) is True
    assert data(store, "k") == b"w"
    client.close()


def test_cluster_writes_a_record_and_its_owner_entry_as_two_calls(
    make_store: StoreFactory, cluster: Cluster
) -> None:
    # One script cannot reach both: the record's slot is not the owner's set's.
    contract.check_indexed_writes(make_store(cluster.url, key_prefix="folded:"))


def test_cluster_owner_index_is_one_slot_while_the_sessions_spread(
    make_store: StoreFactory, cluster: Cluster
) -> None:
    store = make_store(cluster.url, key_prefix="own:")
    owner = uuid.uuid4().hex * 2
    keys = [uuid.uuid4().hex * 2 for _ in range(30)]
    until = int(time.time()) + 60
    for key in keys:
        assert store.save(key, b"x", ttl=60) is True
        store.index_owner(owner, key, until)
    assert sorted(store.owned(owner)) == sorted(keys)
    assert len({cluster.owner(f"own:{key}".encode()) for key in keys}) > 1  # spread
    store.unindex_owner(owner, keys[0])
    assert sorted(store.owned(owner)) == sorted(keys[1:])
