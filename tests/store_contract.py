"""What every store promises, checked the same way for each real server's store.

The store test modules keep their own tests (and their server-specific
assertions); the shared promises live here once.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from server_process import LoopbackServer

from wsgi_session.errors import StoreUnavailable
from wsgi_session.stores.base import IndexedWrites, OwnerIndex, Store

S = TypeVar("S", bound=Store)


def closing_stores(store_class: Callable[..., S]) -> Iterator[Callable[..., S]]:
    """Yield a factory of stores; close each store it built afterwards."""
    stores: list[S] = []

    def make(*args: Any, **kwargs: Any) -> S:
        stores.append(store_class(*args, **kwargs))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


def data(store: Store, key: str) -> bytes | None:
    loaded = store.load(key)
    return None if loaded is None else loaded[0]


def version(store: Store, key: str) -> object:
    loaded = store.load(key)
    assert loaded is not None
    return loaded[1]


def sockets_to(port: int) -> list[socket.socket]:
    """Open sockets of this process connected to ``port``."""
    found = []
    for obj in gc.get_objects():
        if type(obj) is socket.socket and obj.fileno() != -1:
            try:
                if obj.getpeername()[1] == port:
                    found.append(obj)
            except OSError:
                continue
    return found


def local_ports(port: int) -> list[int]:
    return sorted(connection.getsockname()[1] for connection in sockets_to(port))


class Forked:
    """``function`` running in a forked child; :meth:`result` waits for its JSON result."""

    def __init__(self, function: Callable[[], object]) -> None:
        self._read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never return into pytest
            code = 1
            try:
                os.close(self._read)
                os.write(write, json.dumps(function()).encode())
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(write)

    def result(self) -> Any:
        with os.fdopen(self._read, "rb") as pipe:
            output = pipe.read()
        _, status = os.waitpid(self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        return json.loads(output)


def check_fork_gets_its_own_connections(store: Store, port: int) -> None:
    """A forked child opens connections of its own to the server at ``port``."""
    store.save("parent", b"parent data", ttl=60)
    store.save("child", b"child data", ttl=60)
    parent_ports = local_ports(port)
    assert len(parent_ports) == 1

    def child() -> dict[str, list[Any]]:
        # Both processes use the store at once: on a shared socket their
        # replies would interleave and reach the wrong process.
        seen = {data(store, "child") for _ in range(300)}
        return {
            "seen": [value.decode() if value else value for value in seen],
            "ports": local_ports(port),
        }

    forked = Forked(child)
    for _ in range(300):
        assert data(store, "parent") == b"parent data"
    report = forked.result()
    assert report["seen"] == ["child data"]
    assert report["ports"]
    assert set(report["ports"]).isdisjoint(parent_ports)
    assert local_ports(port) == parent_ports


def check_round_trip(store: Store, value: bytes) -> None:
    assert store.save("k", value, ttl=60) is True
    loaded = store.load("k")
    assert loaded is not None
    assert loaded[0] == value


def check_create_conflicts_with_existing_record(store: Store) -> None:
    assert store.save("k", b"first", ttl=60) is True
    assert store.save("k", b"second", ttl=60) is False
    assert data(store, "k") == b"first"


def check_compare_and_set(store: Store) -> None:
    store.save("k", b"v1", ttl=60)
    token = version(store, "k")
    assert store.save("k", b"v2", ttl=60, version=token) is True
    assert store.save("k", b"stale", ttl=60, version=token) is False
    assert data(store, "k") == b"v2"
    assert store.save("k", b"v2", ttl=60, version=version(store, "k")) is True
    assert version(store, "k") != token  # same data, new version
    assert store.save("k", b"v3", ttl=60, version=version(store, "k")) is True
    assert data(store, "k") == b"v3"


def check_compare_and_set_on_deleted_record(store: Store) -> None:
    store.save("k", b"v1", ttl=60)
    token = version(store, "k")
    store.delete("k")
    assert store.save("k", b"v2", ttl=60, version=token) is False
    assert store.load("k") is None  # never recreated by a compare-and-set


def check_concurrent_compare_and_set_loses_no_update(store: Store) -> None:
    """Eight threads each add 50 to one counter by compare-and-set: none is lost."""
    store.save("counter", b"0", ttl=60)

    def increment(times: int) -> None:
        for _ in range(times):
            for _attempt in range(1000):
                loaded = store.load("counter")
                assert loaded is not None
                count, token = loaded
                if store.save("counter", b"%d" % (int(count) + 1), ttl=60, version=token):
                    break

    threads = [threading.Thread(target=increment, args=(50,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert data(store, "counter") == b"400"


def check_indexed_writes(store: Any) -> None:
    """``save_indexed`` / ``delete_indexed`` do what save + index_owner / delete + unindex do."""
    owner, until = "owner-" + os.urandom(4).hex(), 2**31 - 1
    assert isinstance(store, IndexedWrites) and isinstance(store, OwnerIndex)
    assert store.save_indexed("a", b"1", 60, None, owner, until) is True
    assert data(store, "a") == b"1" and store.owned(owner) == ["a"]
    # A create over an existing record, or a stale version: nothing written, nothing listed.
    store.unindex_owner(owner, "a")
    assert store.save_indexed("a", b"2", 60, None, owner, until) is False
    stale = version(store, "a")
    assert store.save("a", b"3", 60, stale) is True
    assert store.save_indexed("a", b"4", 60, stale, owner, until) is False
    assert data(store, "a") == b"3" and store.owned(owner) == []
    assert store.save_indexed("a", b"5", 60, version(store, "a"), owner, until) is True
    assert data(store, "a") == b"5" and store.owned(owner) == ["a"]
    store.delete_indexed("a", owner)
    assert store.load("a") is None and store.owned(owner) == []
    store.delete_indexed("a", owner)  # a missing record is not an error


def check_delete(store: Store) -> None:
    store.save("k", b"v", ttl=60)
    store.delete("k")
    assert store.load("k") is None
    store.delete("k")  # missing: not an error


def check_bad_arguments(store: Store) -> None:
    with pytest.raises(TypeError, match="bytes"):
        store.save("k", "text", ttl=60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="version"):
        store.save("k", b"v", ttl=60, version=7)
    assert store.load("k") is None


each_operation = pytest.mark.parametrize(
    "operation",
    [
        lambda store, version: store.load("k"),
        lambda store, version: store.save("new", b"v", ttl=60),
        lambda store, version: store.save("k", b"v2", ttl=60, version=version),
        lambda store, version: store.delete("k"),
    ],
    ids=["load", "create", "compare-and-set", "delete"],
)
"""Parametrize a test over each store operation, as ``operation(store, version)``."""


def check_outage_and_recovery(
    store: Store, server: LoopbackServer, operation: Callable[[Any, object], object]
) -> StoreUnavailable:
    """``operation`` fails, naming the server, while it is down; the restarted server is empty.

    Returns the error, for the store's own assertions on it.
    """
    store.save("k", b"v", ttl=60)
    token = version(store, "k")
    server.kill()  # the store holds a pooled connection to it
    with pytest.raises(StoreUnavailable, match=server.address) as raised:
        operation(store, token)
    server.start()  # same port; nothing was persisted
    assert store.load("k") is None
    assert store.save("k", b"v2", ttl=60) is True
    assert data(store, "k") == b"v2"
    return raised.value
