"""Fixtures: real memcached, Redis, PostgreSQL and MariaDB servers on loopback; the CLI runner."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from database_servers import DatabaseNotInstalled, MariaDBServer, PostgresServer
from memcached_server import MemcachedFactory, MemcachedNotInstalled, MemcachedServer
from redis_server import RedisFactory, RedisNotInstalled, RedisServer
from server_process import LoopbackServer

from wsgi_session.cli import main

S = TypeVar("S", bound=LoopbackServer)


def _started(item_size: str | None = None) -> MemcachedServer:
    try:
        return MemcachedServer(item_size=item_size).start()
    except MemcachedNotInstalled as exc:
        # Never a skip: a suite that silently skips its store tests passes in CI
        # while testing nothing.
        pytest.fail(str(exc), pytrace=False)


def _killed_after(start_one: Callable[..., S]) -> Iterator[Callable[..., S]]:
    """Yield ``start_one``, keeping every server it starts; kill them all afterwards."""
    servers: list[S] = []

    def start(*args: Any, **options: Any) -> S:
        server = start_one(*args, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def memcached_factory() -> Iterator[MemcachedFactory]:
    """Start servers on demand (``item_size`` is memcached's ``-I``); all stop after the test."""
    yield from _killed_after(_started)


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


# -- Redis --------------------------------------------------------------------


def _redis_started(directory: Path, *args: str, **options: Any) -> RedisServer:
    try:
        return RedisServer(directory, *args, **options).start()
    except RedisNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)  # never a skip, as for memcached


@pytest.fixture
def redis_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisFactory]:
    """Start servers on demand (see ``RedisServer``); all are killed after the test."""

    def start(*args: str, **options: Any) -> RedisServer:
        return _redis_started(tmp_path_factory.mktemp("redis"), *args, **options)

    yield from _killed_after(start)


@pytest.fixture
def redis_server(redis_factory: RedisFactory) -> RedisServer:
    """A server of this test's own, free to be killed and restarted."""
    return redis_factory()


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the whole run: never stop it, and use keys no other test uses."""
    server = _redis_started(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


# -- PostgreSQL and MariaDB ----------------------------------------------------------

D = TypeVar("D", PostgresServer, MariaDBServer)


def _database_started(server_class: type[D]) -> D:
    try:
        return server_class().start()
    except DatabaseNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)  # never a skip, as for memcached


def _removed_after(server_class: type[D]) -> Iterator[Callable[[], D]]:
    servers: list[D] = []

    def start() -> D:
        servers.append(_database_started(server_class))
        return servers[-1]

    yield start
    for server in servers:
        server.remove()


@pytest.fixture
def postgres_factory() -> Iterator[Callable[[], PostgresServer]]:
    """Start PostgreSQL servers on demand; each is killed and deleted after the test."""
    yield from _removed_after(PostgresServer)


@pytest.fixture
def postgres_server(postgres_factory: Callable[[], PostgresServer]) -> PostgresServer:
    """A server of this test's own, free to be killed and restarted (its data persists)."""
    return postgres_factory()


@pytest.fixture(scope="session")
def shared_postgres() -> Iterator[PostgresServer]:
    """One server for the whole run: never stop it, and use a table no other test uses."""
    yield from _one_for_the_run(PostgresServer)


@pytest.fixture(scope="session")
def shared_mariadb() -> Iterator[MariaDBServer]:
    """One MariaDB server for the whole run (Django's tests get their own test database)."""
    yield from _one_for_the_run(MariaDBServer)


def _one_for_the_run(server_class: type[D]) -> Iterator[D]:
    server = _database_started(server_class)
    yield server
    server.remove()


@pytest.fixture
def table() -> str:
    """A table name of this test's own, so tests sharing one PostgreSQL server never meet."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests sharing one server never meet."""
    return f"t{uuid.uuid4().hex[:12]}:"


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``wsgi-session argv...`` in this process; only the given ``WSGI_SESSION_<name>`` are set."""

    def run(*argv: str, **settings: str) -> tuple[int, str, str]:
        with pytest.MonkeyPatch.context() as patch:
            for name in list(os.environ):
                if name.startswith("WSGI_SESSION_"):
                    patch.delenv(name)
            for name, value in settings.items():
                patch.setenv(f"WSGI_SESSION_{name}", value)
            status = main(list(argv))
        out, err = capsys.readouterr()
        return status, out, err

    return run
