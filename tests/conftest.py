"""Fixtures that start real memcached servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from memcached_server import MemcachedFactory, MemcachedNotInstalled, MemcachedServer


def _started(item_size: str | None = None) -> MemcachedServer:
    try:
        return MemcachedServer(item_size=item_size).start()
    except MemcachedNotInstalled as exc:
        # Never a skip: a suite that silently skips its store tests passes in CI
        # while testing nothing.
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def memcached_factory() -> Iterator[MemcachedFactory]:
    """Start servers on demand (``item_size`` is memcached's ``-I``); all stop after the test."""
    servers: list[MemcachedServer] = []

    def start(item_size: str | None = None) -> MemcachedServer:
        server = _started(item_size)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def memcached_server(memcached_factory: MemcachedFactory) -> MemcachedServer:
    """A server of this test's own, free to be killed and restarted."""
    return memcached_factory()


@pytest.fixture(scope="session")
def shared_memcached() -> Iterator[MemcachedServer]:
    """One server for the whole run: never stop it, and use keys no other test uses."""
    server = _started()
    yield server
    server.stop()
