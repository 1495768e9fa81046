"""PostgresStore against real PostgreSQL servers (started by the fixtures with initdb)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import store_contract as contract
from database_servers import PG_PASSWORD, PostgresServer
from helpers import FakeClock, calls_to
from store_contract import Forked, closing_stores, data, version

from wsgi_session import PostgresStore
from wsgi_session.config import store_from_url
from wsgi_session.errors import ConfigurationError, StoreUnavailable
from wsgi_session.stores import postgres
from wsgi_session.stores.base import OwnerIndex, Store

StoreFactory = Callable[..., PostgresStore]


@pytest.fixture
def make_store() -> Iterator[StoreFactory]:
    yield from closing_stores(PostgresStore)


@pytest.fixture
def store(make_store: StoreFactory, shared_postgres: PostgresServer, table: str) -> PostgresStore:
    return make_store(shared_postgres.url, table=table)


def connections(server: PostgresServer, application: str) -> int:
    """How many connections named ``application`` the server has now."""
    rows = server.query(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", application
    )
    return int(rows[0][0])


# URLs and construction -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown", "libpq"),
    [
        ("postgresql://db/app", "postgresql://db/app", {"host": "db", "port": "5432"}),
        (
            "postgres://app:hunter2@db.internal:6543/app?sslmode=verify-full",
            "postgresql://app:***@db.internal:6543/app",
            {"user": "app", "password": "hunter2", "port": "6543", "sslmode": "verify-full"},
        ),
        (
            "postgresql://app:p%40ss%2Fword@[::1]/app",
            "postgresql://app:***@[::1]/app",
            {"host": "::1", "password": "p@ss/word"},
        ),
        (
            "postgresql://a:5432,b:5433/app?target_session_attrs=read-write",
            "postgresql://a,b:5433/app",
            {"host": "a,b", "port": "5432,5433", "target_session_attrs": "read-write"},
        ),
        (
            "postgresql:///app?host=/run/postgresql&application_name=web",
            "postgresql:///app?host=/run/postgresql",
            {"host": "/run/postgresql", "dbname": "app", "application_name": "web"},
        ),
    ],
)
def test_url_forms(url: str, shown: str, libpq: dict[str, str]) -> None:
    store = PostgresStore(url)
    assert store.where == shown
    assert repr(store) == f"PostgresStore({shown!r}, table='wsgi_sessions')"
    assert libpq.items() <= store._target.libpq().items()


def test_url_query_options() -> None:
    store = PostgresStore(
        "postgresql://db/app?table=web_sessions&statement_timeout=0.5&pool_size=3"
        "&pool_timeout=0.25&connect_timeout=3&create_table=false"
    )
    assert (store.table, store.statement_timeout, store.pool_size) == ("web_sessions", 0.5, 3)
    assert (store.pool_timeout, store.connect_timeout, store.create_table) == (0.25, 3.0, False)
    assert store_from_url("postgres://db/app?table=x").table == "x"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("url", "kwargs", "setting"),
    [
        ("mysql://db/app", {}, "url"),
        ("postgresql://db/app#x", {}, "url"),
        ("postgresql://db/app?colour=blue", {}, "url"),
        ("postgresql://db/app?sslmode=sometimes", {}, "sslmode"),
        ("postgresql://db/app?sslmode={x}", {}, "sslmode"),  # braces are no template
        ("postgresql://db/app?statement_timeout=soon", {}, "statement_timeout"),
        ("postgresql://db/app?table=x", {"table": "y"}, "table"),
        ("postgresql://db/app", {"table": "drop table;"}, "table"),
        ("postgresql://db/app", {"statement_timeout": 0}, "statement_timeout"),
        ("postgresql://db/app", {"pool_size": 0}, "pool_size"),
        ("postgresql://db:99999/app", {}, "url"),
        ("postgresql://db/a/b", {}, "url"),
        ("postgresql://db/app?host=/run", {}, "url"),
    ],
)
def test_bad_configuration_fails_at_construction(
    url: str, kwargs: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        PostgresStore(url, **kwargs)
    assert raised.value.setting == setting


def test_a_bad_url_in_the_settings_names_the_setting_and_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as raised:
        store_from_url("postgresql://app:hunter2@db/app?sslmode=sometimes")
    assert "sslmode" in str(raised.value)
    assert "hunter2" not in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        store_from_url("postgresql://app:hunter2@db/app?sslpassword=x&sslpassword=y")
    assert "hunter2" not in str(raised.value)


def test_secrets_never_shown(
    make_store: StoreFactory, shared_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = shared_postgres.url.replace(PG_PASSWORD, "wr0ng-pass%2Fword")
    store = make_store(wrong + "?sslpassword=key-secret")
    with pytest.raises(StoreUnavailable) as raised:
        store.load("k")
    shown = str(raised.value) + repr(store) + store.where + caplog.text
    assert "authentication failed" in shown
    for secret in ("wr0ng", "pass/word", "pass%2Fword", "key-secret"):
        assert secret not in shown


def test_no_connection_before_first_use(
    make_store: StoreFactory, shared_postgres: PostgresServer, table: str
) -> None:
    url = f"{shared_postgres.url}?application_name={table}"
    store = make_store(url, table=table)
    assert connections(shared_postgres, table) == 0
    assert store.load("k") is None
    assert connections(shared_postgres, table) == 1


def test_is_a_store_with_an_owner_index(store: PostgresStore) -> None:
    assert isinstance(store, Store)
    assert isinstance(store, OwnerIndex)


# The contract -------------------------------------------------------------------------


def test_round_trip(store: PostgresStore) -> None:
    contract.check_round_trip(store, b"\x00\xff binary\r\n\\x00 'quoted'")


def test_load_missing(store: PostgresStore) -> None:
    assert store.load("missing") is None


def test_create_conflicts_with_existing_record(store: PostgresStore) -> None:
    contract.check_create_conflicts_with_existing_record(store)


def test_compare_and_set(store: PostgresStore) -> None:
    contract.check_compare_and_set(store)


def test_compare_and_set_on_deleted_record(store: PostgresStore) -> None:
    contract.check_compare_and_set_on_deleted_record(store)


def test_concurrent_compare_and_set_loses_no_update(store: PostgresStore) -> None:
    contract.check_concurrent_compare_and_set_loses_no_update(store)


def test_delete(store: PostgresStore) -> None:
    contract.check_delete(store)


def test_bad_arguments(store: PostgresStore) -> None:
    with pytest.raises(TypeError, match="bytes"):
        store.save("k", "text", ttl=60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="version"):
        store.save("k", b"v", ttl=60, version=b"token")
    with pytest.raises(ValueError, match="ttl"):
        store.save("k", b"v", ttl=0)
    with pytest.raises(ValueError, match="key"):
        store.load("")
    assert store.load("k") is None


def test_each_operation_is_one_statement_and_leaves_no_transaction_open(
    store: PostgresStore, shared_postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.load("warm-up")  # the table is created by the first use
    calls = calls_to(monkeypatch, psycopg.Connection, "execute")
    store.save("k", b"v1", ttl=60)
    store.save("k", b"v2", ttl=60, version=version(store, "k"))
    store.delete("k")
    assert [call[1].split()[0] for call in calls] == ["INSERT", "SELECT", "UPDATE", "DELETE"]
    stuck = shared_postgres.query(
        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%'"
    )
    assert stuck == [(0,)]


# Expiry, the table, purging ---------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(
    make_store: StoreFactory, shared_postgres: PostgresServer, table: str, clock: FakeClock
) -> PostgresStore:
    return make_store(shared_postgres.url, table=table, clock=clock)


def test_expired_records_are_invisible_and_replaced_by_a_create(
    timed: PostgresStore, clock: FakeClock
) -> None:
    timed.save("k", b"v1", ttl=10)
    token = version(timed, "k")
    clock.advance(10)
    assert timed.load("k") is None
    assert timed.save("k", b"v2", ttl=10, version=token) is False  # expired: a conflict
    assert timed.save("k", b"v3", ttl=10) is True
    assert data(timed, "k") == b"v3"
    assert version(timed, "k") != token


def test_purge_deletes_expired_rows_in_small_batches(
    timed: PostgresStore,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    shared_postgres: PostgresServer,
    table: str,
) -> None:
    count = 2 * postgres.PURGE_BATCH + 7
    for index in range(count):
        timed.save(f"old{index}", b"v", ttl=5)
    timed.save("live", b"v", ttl=60)
    clock.advance(10)
    calls = calls_to(monkeypatch, psycopg.Connection, "execute")
    assert timed.purge_expired() == count
    assert len(calls) == 3  # two full batches and the rest
    assert data(timed, "live") == b"v"
    assert shared_postgres.query(f'SELECT count(*) FROM "{table}"') == [(1,)]  # noqa: S608


def test_the_table_is_created_on_first_use_with_its_indexes(
    store: PostgresStore, shared_postgres: PostgresServer, table: str
) -> None:
    assert store.schema_problems() == []  # missing, and created by the first use
    assert shared_postgres.query("SELECT to_regclass(%s)", table) == [(None,)]
    store.save("k", b"v", ttl=60)
    assert store.schema_problems() == []
    indexes = shared_postgres.query(
        "SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname", table
    )
    defs = " ".join(row[0] for row in indexes)
    assert "(expires)" in defs and "(owner) WHERE (owner IS NOT NULL)" in defs
    assert "UNIQUE INDEX" in defs and "(key)" in defs


def test_many_processes_creating_the_table_at_once(
    shared_postgres: PostgresServer, table: str
) -> None:
    def create() -> bool:
        return PostgresStore(shared_postgres.url, table=table).save("k", b"v", ttl=60)

    children = [Forked(create) for _ in range(6)]
    assert sorted(child.result() for child in children) == [False] * 5 + [True]


def test_without_create_table_a_missing_table_says_so(
    make_store: StoreFactory, shared_postgres: PostgresServer, table: str
) -> None:
    store = make_store(shared_postgres.url, table=table, create_table=False)
    with pytest.raises(StoreUnavailable, match=f'"{table}" does not exist'):
        store.load("k")
    assert store.schema_problems() == [
        f"the table {table!r} does not exist (wsgi-session init creates it)"
    ]
    store.create_schema()
    assert store.load("k") is None


def test_a_table_dropped_under_the_store_is_created_again(
    store: PostgresStore, shared_postgres: PostgresServer, table: str
) -> None:
    store.save("k", b"v", ttl=60)
    shared_postgres.query(f'DROP TABLE "{table}"')
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.load("k")
    assert store.save("k", b"v2", ttl=60) is True


def test_a_wrong_schema_is_named(
    store: PostgresStore, shared_postgres: PostgresServer, table: str
) -> None:
    shared_postgres.query(f'CREATE TABLE "{table}" (key text PRIMARY KEY, data text)')
    assert store.schema_problems() == [
        f"the column {table}.data is text, not bytea",
        f"the table {table!r} has no column 'version' of type bigint",
        f"the table {table!r} has no column 'expires' of type double precision",
        f"the table {table!r} has no column 'owner' of type text",
    ]


# Outages ------------------------------------------------------------------------------


def test_nothing_listening(make_store: StoreFactory, postgres_server: PostgresServer) -> None:
    postgres_server.kill()
    store = make_store(postgres_server.url)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=re.escape("127.0.0.1")) as raised:
        store.load("k")
    assert isinstance(raised.value.__cause__, psycopg.OperationalError)
    assert time.monotonic() - started < 1


@contract.each_operation
def test_outage_and_recovery(
    make_store: StoreFactory,
    postgres_server: PostgresServer,
    operation: Callable[[PostgresStore, object], object],
) -> None:
    store = make_store(postgres_server.url)
    store.save("k", b"v", ttl=60)
    token = version(store, "k")
    postgres_server.kill()
    with pytest.raises(StoreUnavailable, match=postgres_server.address):
        operation(store, token)
    postgres_server.start()  # same port and data directory: the record is still there
    assert data(store, "k") == b"v"
    assert store.save("k", b"v2", ttl=60, version=version(store, "k")) is True


def test_every_request_after_a_restart_is_served(
    make_store: StoreFactory, postgres_server: PostgresServer
) -> None:
    """Eight pooled connections, all dead after the restart: not one request fails for it."""
    store = make_store(postgres_server.url)
    contract.check_concurrent_compare_and_set_loses_no_update(store)  # eight threads at once
    postgres_server.kill()
    postgres_server.start()
    for index in range(20):
        assert store.save(f"after{index}", b"v", ttl=60) is True
    assert data(store, "counter") == b"400"


def test_a_restart_during_an_outage_is_served_at_once(
    make_store: StoreFactory, postgres_server: PostgresServer
) -> None:
    store = make_store(postgres_server.url)
    store.save("k", b"v", ttl=60)
    postgres_server.kill()
    for _ in range(5):  # a pool with a reconnect back-off would now wait seconds
        with pytest.raises(StoreUnavailable):
            store.load("k")
    postgres_server.start()
    assert data(store, "k") == b"v"


def hold_lock(server: PostgresServer, table: str) -> tuple[psycopg.Connection[Any], Any]:
    locker = server.connect()
    transaction = locker.transaction()
    transaction.__enter__()
    locker.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
    return locker, transaction


def test_a_locked_table_hits_the_statement_timeout(
    make_store: StoreFactory, shared_postgres: PostgresServer, table: str
) -> None:
    store = make_store(shared_postgres.url, table=table, statement_timeout=0.3)
    store.save("k", b"v", ttl=60)
    locker, transaction = hold_lock(shared_postgres, table)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="statement timeout"):
            store.save("k", b"v2", ttl=60, version=version(store, "k"))
        assert time.monotonic() - started < 2
    finally:
        transaction.__exit__(None, None, None)
        locker.close()
    assert data(store, "k") == b"v"
    assert store.save("k", b"v2", ttl=60, version=version(store, "k")) is True


def test_an_exhausted_pool_is_unavailable(
    make_store: StoreFactory, shared_postgres: PostgresServer, table: str
) -> None:
    store = make_store(
        shared_postgres.url, table=table, pool_size=1, pool_timeout=0.2, statement_timeout=3
    )
    store.save("k", b"v", ttl=60)
    locker, transaction = hold_lock(shared_postgres, table)
    blocked = threading.Thread(target=lambda: store.load("k"))  # holds the one connection
    try:
        blocked.start()
        contract_wait(
            lambda: (
                shared_postgres.query(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                )
                != [(0,)]
            )
        )
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="1 connections stayed busy"):
            store.load("k")
        assert time.monotonic() - started < 1
    finally:
        transaction.__exit__(None, None, None)
        locker.close()
        blocked.join(5)
    assert data(store, "k") == b"v"


def contract_wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_connections_are_reused_and_bounded(
    make_store: StoreFactory, shared_postgres: PostgresServer, table: str
) -> None:
    store = make_store(f"{shared_postgres.url}?application_name={table}", table=table)
    for index in range(20):
        store.save(f"k{index}", b"v", ttl=60)
    assert connections(shared_postgres, table) == 1
    contract.check_concurrent_compare_and_set_loses_no_update(store)
    assert 1 <= connections(shared_postgres, table) <= 8
    store.close()
    contract_wait(lambda: connections(shared_postgres, table) == 0)


def test_fork_gets_its_own_connections(
    make_store: StoreFactory, shared_postgres: PostgresServer, table: str
) -> None:
    store = make_store(f"{shared_postgres.url}?application_name={table}", table=table)
    store.save("parent", b"parent data", ttl=60)
    store.save("child", b"child data", ttl=60)

    def child() -> list[str]:
        # On a shared connection the two processes' replies would interleave.
        return sorted({(data(store, "child") or b"").decode() for _ in range(300)})

    forked = Forked(child)
    for _ in range(300):
        assert data(store, "parent") == b"parent data"
    assert forked.result() == ["child data"]
    assert data(store, "parent") == b"parent data"
