"""SQLiteStore against real SQLite files, threads and processes."""

from __future__ import annotations

import logging
import multiprocessing
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import store_contract as contract

from wsgi_session.errors import ConfigurationError, StoreUnavailable
from wsgi_session.stores import sqlite as sqlite_module
from wsgi_session.stores.base import Store
from wsgi_session.stores.sqlite import SQLiteStore, default_path

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier

TTL = 60


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.sqlite3"


@pytest.fixture
def store(path: Path, clock: Clock) -> Iterator[SQLiteStore]:
    store = SQLiteStore(path, clock=clock)
    yield store
    store.close()


def test_is_a_store(store: SQLiteStore) -> None:
    assert isinstance(store, Store)


def test_round_trip(store: SQLiteStore) -> None:
    assert store.load("k") is None
    assert store.save("k", b"\x00first", TTL) is True
    loaded = store.load("k")
    assert loaded is not None
    data, version = loaded
    assert data == b"\x00first"

    assert store.save("k", b"second", TTL, version) is True
    loaded = store.load("k")
    assert loaded is not None
    assert loaded[0] == b"second"
    assert loaded[1] != version

    store.delete("k")
    assert store.load("k") is None
    store.delete("k")  # deleting a missing record is not an error


def test_records_survive_a_new_store_on_the_same_file(
    store: SQLiteStore, path: Path, clock: Clock
) -> None:
    store.save("k", b"data", TTL)
    other = SQLiteStore(path, clock=clock)
    try:
        loaded = other.load("k")
    finally:
        other.close()
    assert loaded is not None
    assert loaded[0] == b"data"


def test_create_only_if_absent(store: SQLiteStore) -> None:
    assert store.save("k", b"first", TTL) is True
    assert store.save("k", b"second", TTL) is False
    loaded = store.load("k")
    assert loaded is not None
    assert loaded[0] == b"first"


def test_compare_and_set_refuses_a_stale_version(store: SQLiteStore) -> None:
    store.save("k", b"v1", TTL)
    loaded = store.load("k")
    assert loaded is not None
    stale = loaded[1]
    assert store.save("k", b"v2", TTL, stale) is True

    assert store.save("k", b"lost update", TTL, stale) is False
    loaded = store.load("k")
    assert loaded is not None
    assert loaded[0] == b"v2"


def test_compare_and_set_does_not_resurrect_a_deleted_record(store: SQLiteStore) -> None:
    store.save("k", b"v1", TTL)
    loaded = store.load("k")
    assert loaded is not None
    store.delete("k")

    assert store.save("k", b"v2", TTL, loaded[1]) is False
    assert store.load("k") is None


def test_compare_and_set_with_a_foreign_token_is_a_conflict(store: SQLiteStore) -> None:
    store.save("k", b"v1", TTL)
    assert store.save("k", b"v2", TTL, "not a version") is False


def test_expired_record_is_invisible(store: SQLiteStore, clock: Clock) -> None:
    store.save("k", b"data", 10)
    clock.now += 9.5
    assert store.load("k") is not None
    clock.now += 0.5
    assert store.load("k") is None


def test_save_extends_the_expiry(store: SQLiteStore, clock: Clock) -> None:
    store.save("k", b"data", 10)
    clock.now += 9
    loaded = store.load("k")
    assert loaded is not None
    assert store.save("k", b"data", 10, loaded[1]) is True
    clock.now += 9
    assert store.load("k") is not None


def test_compare_and_set_on_an_expired_record_is_a_conflict(
    store: SQLiteStore, clock: Clock
) -> None:
    store.save("k", b"old", 10)
    loaded = store.load("k")
    assert loaded is not None
    clock.now += 10
    assert store.save("k", b"new", TTL, loaded[1]) is False
    assert store.load("k") is None


def test_create_replaces_an_expired_record(store: SQLiteStore, clock: Clock) -> None:
    store.save("k", b"old", 10)
    loaded = store.load("k")
    assert loaded is not None
    old_version = loaded[1]
    clock.now += 10

    assert store.save("k", b"new", TTL) is True
    loaded = store.load("k")
    assert loaded is not None
    assert loaded[0] == b"new"
    # A token from before the expiry must not match the new record.
    assert store.save("k", b"from the past", TTL, old_version) is False


def test_purge_expired(store: SQLiteStore, clock: Clock) -> None:
    store.save("short-1", b"a", 10)
    store.save("short-2", b"b", 20)
    store.save("long", b"c", 100)
    clock.now += 20

    assert store.purge_expired() == 2
    assert store.purge_expired() == 0
    loaded = store.load("long")
    assert loaded is not None
    assert loaded[0] == b"c"
    # Purged rows are gone, not just hidden: moving the clock back shows it.
    clock.now -= 20
    assert store.load("short-1") is None
    assert store.load("short-2") is None


def test_construction_touches_no_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "app" / "sessions.sqlite3"
    store = SQLiteStore(path)
    assert not (tmp_path / "state").exists()

    assert store.load("k") is None
    store.close()
    assert path.is_file()
    assert path.stat().st_mode & 0o077 == 0


def test_default_path_follows_xdg_state_home_and_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    expected = tmp_path / "xdg" / "wsgi_session" / "sessions.sqlite3"
    assert default_path() == expected

    with caplog.at_level(logging.INFO, logger="wsgi_session"):
        store = SQLiteStore()
        SQLiteStore(tmp_path / "chosen.db")  # a path the user chose is not announced
    assert store.path == expected
    assert [r.getMessage() for r in caplog.records] == [
        f"sessions are stored in {expected} (the default location)"
    ]
    assert not (tmp_path / "xdg").exists()
    store.save("k", b"data", TTL)
    store.close()
    assert expected.is_file()


def test_default_path_ignores_a_relative_xdg_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_path() == tmp_path / ".local" / "state" / "wsgi_session" / "sessions.sqlite3"


def test_custom_table_shares_the_file_independently(store: SQLiteStore, path: Path) -> None:
    # "select" is an SQL keyword: the name must be quoted everywhere.
    other = SQLiteStore(path, table="select")
    try:
        store.save("k", b"default table", TTL)
        assert other.load("k") is None
        assert other.save("k", b"other table", TTL) is True
        loaded = other.load("k")
    finally:
        other.close()
    assert loaded is not None
    assert loaded[0] == b"other table"
    default = store.load("k")
    assert default is not None
    assert default[0] == b"default table"


def _thread_work(store: SQLiteStore, barrier: threading.Barrier, thread: int) -> None:
    barrier.wait()
    try:
        for i in range(50):
            key = f"t{thread}-{i}"
            assert store.save(key, b"0", TTL) is True
            loaded = store.load(key)
            assert loaded is not None
            assert store.save(key, f"{thread}:{i}".encode(), TTL, loaded[1]) is True
    finally:
        store.close()


def test_threads_get_their_own_connections(store: SQLiteStore) -> None:
    # SQLite refuses a connection used from a thread other than its creator,
    # so any sharing between threads would make this fail.
    threads = 8
    barrier = threading.Barrier(threads)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(_thread_work, store, barrier, t) for t in range(threads)]
        for future in futures:
            future.result()

    for thread in range(threads):
        for i in range(50):
            loaded = store.load(f"t{thread}-{i}")
            assert loaded is not None
            assert loaded[0] == f"{thread}:{i}".encode()


def _connection_of(store: SQLiteStore) -> sqlite3.Connection:
    # White box: which connection this thread of this process holds.
    owned: tuple[int, sqlite3.Connection] = store._local.owned
    return owned[1]


def _forked_child(store: SQLiteStore, inherited: sqlite3.Connection) -> None:
    loaded = store.load("parent")
    assert loaded is not None
    assert loaded[0] == b"from parent"
    assert store.save("parent", b"changed by child", TTL, loaded[1]) is True
    assert store.save("child", b"from child", TTL) is True
    assert _connection_of(store) is not inherited


def _run_forked_child(store: SQLiteStore, inherited: sqlite3.Connection) -> None:
    child = multiprocessing.get_context("fork").Process(
        target=_forked_child, args=(store, inherited)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0


def _assert_parent_sees_child_writes(store: SQLiteStore) -> None:
    parent = store.load("parent")
    child = store.load("child")
    assert parent is not None
    assert child is not None
    assert parent[0] == b"changed by child"
    assert child[0] == b"from child"
    assert store.save("after fork", b"still works", TTL) is True


def test_fork_child_opens_its_own_connection(store: SQLiteStore) -> None:
    store.save("parent", b"from parent", TTL)
    inherited = _connection_of(store)
    _run_forked_child(store, inherited)
    _assert_parent_sees_child_writes(store)


def _child_of_hookless_fork(store: SQLiteStore, inherited: sqlite3.Connection) -> None:
    _forked_child(store, inherited)
    # The inherited connection must be neither used nor closed in the child;
    # total_changes would raise on a closed connection.
    assert inherited.total_changes >= 0


def test_fork_without_the_before_fork_hook_never_reuses_the_connection(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: servers such as uWSGI fork from C and run only the
    # after-fork hook, so the child does inherit an open connection. Hiding
    # the store from the before-fork hook reproduces that with a real fork.
    monkeypatch.setattr(sqlite_module, "_stores", weakref.WeakSet())
    store.save("parent", b"from parent", TTL)
    inherited = _connection_of(store)
    child = multiprocessing.get_context("fork").Process(
        target=_child_of_hookless_fork, args=(store, inherited)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert _connection_of(store) is inherited
    _assert_parent_sees_child_writes(store)


COUNTER = "counter"


def _count_up(path: str, increments: int, start: Barrier) -> None:
    store = SQLiteStore(path)
    start.wait()
    for _ in range(increments):
        while True:
            loaded = store.load(COUNTER)
            if loaded is None:
                done = store.save(COUNTER, b"1", TTL)
            else:
                value = int(loaded[0]) + 1
                done = store.save(COUNTER, str(value).encode(), TTL, loaded[1])
            if done:
                break
    store.close()


def test_compare_and_set_serializes_two_processes(store: SQLiteStore, path: Path) -> None:
    processes, increments = 3, 1000
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    workers = [
        context.Process(target=_count_up, args=(str(path), increments, start))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * processes

    loaded = store.load(COUNTER)
    assert loaded is not None
    assert int(loaded[0]) == processes * increments


def _assert_every_operation_unavailable(store: SQLiteStore, path: Path) -> None:
    operations = [
        lambda: store.load("k"),
        lambda: store.save("k", b"data", TTL),
        lambda: store.save("k", b"data", TTL, 1),
        lambda: store.delete("k"),
        store.purge_expired,
    ]
    for operation in operations:
        with pytest.raises(StoreUnavailable, match=re.escape(str(path))):
            operation()


def test_parent_that_is_a_file_is_unavailable_until_fixed(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_bytes(b"")
    path = blocker / "sessions.sqlite3"
    store = SQLiteStore(path)
    _assert_every_operation_unavailable(store, path)

    blocker.unlink()
    assert store.save("k", b"data", TTL) is True
    store.close()


def test_path_that_is_a_directory_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    _assert_every_operation_unavailable(store, tmp_path)


def test_file_that_is_not_a_database_is_unavailable(path: Path) -> None:
    path.write_bytes(b"this is not a SQLite database, only some text" * 100)
    store = SQLiteStore(path)
    _assert_every_operation_unavailable(store, path)
    assert path.read_bytes().startswith(b"this is not a SQLite database")


def test_lock_held_beyond_the_timeout_is_unavailable(
    store: SQLiteStore, path: Path, clock: Clock
) -> None:
    store.save("k", b"data", TTL)
    impatient = SQLiteStore(path, timeout=0.05, clock=clock)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            impatient.save("k2", b"data", TTL)
        # Readers are not blocked by a writer in WAL mode.
        assert impatient.load("k") is not None
        blocker.execute("ROLLBACK")
        assert impatient.save("k2", b"data", TTL) is True
    finally:
        blocker.close()
        impatient.close()


def _hold_write_lock(path: Path, locked: threading.Event, seconds: float) -> None:
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        holder.execute("COMMIT")
    finally:
        holder.close()


def test_switch_to_wal_waits_for_another_writer(path: Path) -> None:
    # SQLite does not wait for the lock upgrade that switching to WAL needs;
    # this is what happens when several workers open a new file at once.
    sqlite3.connect(path).close()
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, locked, 0.2))
    holder.start()
    locked.wait()
    store = SQLiteStore(path)
    try:
        assert store.save("k", b"data", TTL) is True
    finally:
        store.close()
        holder.join()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        check.close()


@pytest.mark.parametrize(
    "table", ["", "1sessions", "my-sessions", 'x"; DROP TABLE y; --', "sqlite_sessions"]
)
def test_bad_table_name_is_refused(path: Path, table: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^table:"):
        SQLiteStore(path, table=table)
    assert not path.exists()


@pytest.mark.parametrize("timeout", [-1.0, float("nan"), float("inf")])
def test_bad_timeout_is_refused(path: Path, timeout: float) -> None:
    with pytest.raises(ConfigurationError, match=r"^timeout:"):
        SQLiteStore(path, timeout=timeout)


def test_in_memory_database_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"^path:"):
        SQLiteStore(":memory:")


def test_a_record_and_its_owner_in_one_statement(store: SQLiteStore) -> None:
    contract.check_indexed_writes(store)
