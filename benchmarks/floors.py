"""The physical floor: one raw store operation, with nothing of a session library around it."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.subjects import pymemcache_client

TABLE = "wsgi_sessions"  # SQLiteStore's default table
TTL = 3600


def session_record(data: dict[str, Any]) -> bytes:
    """What wsgi_session stores for ``data``: the floors read and write records this size."""
    from wsgi_session.record import Record
    from wsgi_session.serialization import dumps

    now = time.time()
    return Record(now, now, False, None, dumps(data)).encode()


def floor_keys(count: int, tag: str) -> list[str]:
    """Keys shaped like the store keys wsgi_session writes (hex SHA-256)."""
    return [hashlib.sha256(f"{tag}:{i}".encode()).hexdigest() for i in range(count)]


def memcached_ops(
    address: str, value: bytes, keys: Sequence[str] = ()
) -> dict[str, Callable[[int], object]]:
    """A GET and an acknowledged SET of ``value``, cycling through ``keys`` (already stored).

    Without ``keys`` one record is written first and used for every call.
    """
    client = pymemcache_client(address, noreply=False)
    if not keys:
        keys = floor_keys(1, "memcached-floor")
        client.set(keys[0], value, expire=TTL)
    if client.get(keys[0]) is None:
        raise RuntimeError("memcached floor: the record to read is missing")
    count = len(keys)
    get = client.get
    set_ = client.set
    gets = client.gets
    cas = client.cas

    def read(i: int) -> object:
        return get(keys[i % count])

    def write(i: int) -> object:
        return set_(keys[i % count], value, expire=TTL, noreply=False)

    def compare_and_set(i: int) -> object:
        # What a session write sends: the read that gives the token, the write that needs it.
        key = keys[i % count]
        _, token = gets(key)
        return cas(key, value, token, expire=TTL, noreply=False)

    return {
        "memcached GET": read,
        "memcached SET": write,
        "memcached GETS + CAS": compare_and_set,
    }


def redis_ops(address: str, value: bytes) -> dict[str, Callable[[int], object]]:
    """A raw redis-py GET and SET (with its TTL) of ``value`` on one key, redis-py's defaults.

    Also the pair a session write sends: a GET and RedisStore's compare-and-set
    script (``EVALSHA``), which replaces the value while it starts with the
    same token (here it always does).
    """
    import redis

    from wsgi_session.stores.redis import _COMPARE_AND_SET, TOKEN_BYTES

    host, port = address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    key = floor_keys(1, "redis-floor")[0]
    client.set(key, value, ex=TTL)
    if client.get(key) is None:
        raise RuntimeError("Redis floor: the record to read is missing")
    get = client.get
    set_ = client.set
    evalsha = client.evalsha
    script = client.script_load(_COMPARE_AND_SET)
    token = value[:TOKEN_BYTES]

    def read(i: int) -> object:
        return get(key)

    def write(i: int) -> object:
        return set_(key, value, ex=TTL)

    def compare_and_set(i: int) -> object:
        get(key)
        return evalsha(script, 1, key, token, value, TTL)

    return {"Redis GET": read, "Redis SET": write, "Redis GET + EVALSHA": compare_and_set}


def sqlite_table(path: Path) -> None:
    """Let SQLiteStore create its file and table, so the raw statements run on the same."""
    from wsgi_session.stores.sqlite import SQLiteStore

    store = SQLiteStore(path)
    store.load("0" * 64)
    store.close()


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """A connection set up as SQLiteStore sets up its own."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    return connection


def sqlite_ops(
    path: Path, value: bytes, keys: Sequence[str] = ()
) -> dict[str, Callable[[int], object]]:
    """A SELECT and an UPSERT by primary key, cycling through ``keys`` (already stored)."""
    sqlite_table(path)
    connection = sqlite_connect(path)
    execute = connection.execute
    select = f'SELECT data, version FROM "{TABLE}" WHERE key = ?'
    upsert = (
        f'INSERT INTO "{TABLE}" (key, data, version, expires) VALUES (?, ?, 1, ?) '
        "ON CONFLICT (key) DO UPDATE SET data = excluded.data, version = version + 1, "
        "expires = excluded.expires"
    )
    if not keys:
        keys = floor_keys(1, "sqlite-floor")
        execute(upsert, (keys[0], value, time.time() + TTL))
    if execute(select, (keys[0],)).fetchone() is None:
        raise RuntimeError("SQLite floor: the row to read is missing")
    count = len(keys)

    def read(i: int) -> Any:
        return execute(select, (keys[i % count],)).fetchone()

    def write(i: int) -> object:
        return execute(upsert, (keys[i % count], value, time.time() + TTL))

    return {"SQLite SELECT": read, "SQLite UPSERT": write}
