"""Session records in PostgreSQL, one row a record, through psycopg 3.

A row holds the hashed key (the primary key), the record, a version counter,
the expiry (POSIX seconds, indexed for the purge) and the owner column of the
per-user index. Every operation is one statement in autocommit mode, so one
round trip, no lock held across the request and no transaction left open:

- load: ``SELECT ... WHERE key = ... AND expires > now``;
- create: ``INSERT ... ON CONFLICT (key) DO UPDATE ... WHERE expired``: a live
  row is never touched (the conflict answers ``False``), an expired one is as
  good as absent;
- versioned save: ``UPDATE ... WHERE key = ... AND version = ...``, which
  bumps the version.

Connections are this module's own small per-process pool rather than
``psycopg_pool.ConnectionPool``: that pool connects in background workers
with an exponential back-off (one second, doubling), so after an outage its
waiting clients keep timing out for seconds while the server is back, and
while the server refuses connections every request waits its full pool
timeout. Here a request that finds no idle connection connects itself, under
``connect_timeout``: a refused connection is a 503 at once, and the first
request after the server returns is served. A pooled connection the server
dropped (a restart) is retried once on a new connection, and its idle
siblings are dropped with it; a write retried after it did land answers a
conflict, which the compare-and-set merge resolves, never a false success.
"""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from wsgi_session.errors import (
    ConfigurationError,
    StoreUnavailable,
    StoreWriteFailed,
    check_seconds,
)
from wsgi_session.stores.base import (
    ADDRESS,
    BadOption,
    Version,
    check_counted_version,
    check_record,
    credentials,
    parse_flag,
    read_query,
)

__all__ = ["SCHEMES", "PostgresStore"]

T = TypeVar("T")

SCHEMES = ("postgresql", "postgres")
"""The URL schemes :class:`PostgresStore` reads."""

DEFAULT_PORT = 5432
PURGE_BATCH = 500
"""Expired rows one purge statement deletes: short statements never hold up the application."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,50}\Z")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# The columns a table must have, with the types PostgreSQL reports for them.
COLUMNS = {
    "key": "text",
    "data": "bytea",
    "version": "bigint",
    "expires": "double precision",
    "owner": "text",
}

# {table} is only ever filled in with a name that matched _IDENTIFIER.
_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS "{table}" (
        key text PRIMARY KEY,
        data bytea NOT NULL,
        version bigint NOT NULL,
        expires double precision NOT NULL,
        owner text
    )
    """,
    'CREATE INDEX IF NOT EXISTS "{table}_expires" ON "{table}" (expires)',
    'CREATE INDEX IF NOT EXISTS "{table}_owner" ON "{table}" (owner) WHERE owner IS NOT NULL',
)
_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext(%s))"  # concurrent creators queue
_COLUMN_TYPES = """
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = %s
"""
_LOAD = 'SELECT data, version FROM "{table}" WHERE key = %s AND expires > %s'
_CREATE = """
INSERT INTO "{table}" AS t (key, data, version, expires) VALUES (%s, %s, 1, %s)
ON CONFLICT (key) DO UPDATE
SET data = excluded.data, version = t.version + 1, expires = excluded.expires, owner = NULL
WHERE t.expires <= %s
"""
_REPLACE = """
UPDATE "{table}" SET data = %s, version = version + 1, expires = %s
WHERE key = %s AND version = %s AND expires > %s
"""
_DELETE = 'DELETE FROM "{table}" WHERE key = %s'
# SKIP LOCKED: a row a request is writing right now is left for the next run.
_PURGE = """
DELETE FROM "{table}" WHERE key IN (
    SELECT key FROM "{table}" WHERE expires <= %s LIMIT {batch} FOR UPDATE SKIP LOCKED
)
"""
# wsgi-session stats: the rows not past their store expiry, and the table's size on disk.
_SCAN = 'SELECT data FROM "{table}" WHERE expires > %s'
_COUNT = 'SELECT count(*) FROM "{table}" WHERE expires > %s'
_SIZE = "SELECT pg_total_relation_size(%s)"
SCAN_BATCH = 1000
"""Rows a fetch of ``records()`` reads: each fetch is a statement of its own, under the timeout."""
_INDEX = 'UPDATE "{table}" SET owner = %s WHERE key = %s'
_UNINDEX = 'UPDATE "{table}" SET owner = NULL WHERE key = %s AND owner = %s'
_OWNED = 'SELECT key FROM "{table}" WHERE owner = %s AND expires > %s'


def _seconds(text: str) -> float:
    return float(text)


# Options that are ours, and libpq's own that a URL may pass through to it.
_OWN_OPTIONS: dict[str, Callable[[str], object]] = {
    "table": str,
    "connect_timeout": _seconds,
    "statement_timeout": _seconds,
    "pool_size": int,
    "pool_timeout": _seconds,
    "create_table": parse_flag,
}
_LIBPQ_OPTIONS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslpassword",
    "sslnegotiation",
    "channel_binding",
    "gssencmode",
    "application_name",
    "target_session_attrs",
    "options",
    "passfile",
    "service",
    "host",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)
_SECRET_OPTIONS = ("sslpassword",)
_QUERY_OPTIONS: dict[str, Callable[[str], object]] = {
    **_OWN_OPTIONS,
    **dict.fromkeys(_LIBPQ_OPTIONS, str),
}
_DEFAULTS: dict[str, object] = {
    "table": "wsgi_sessions",
    "connect_timeout": 2.0,
    "statement_timeout": 2.0,
    "pool_size": 10,
    "pool_timeout": 2.0,
    "create_table": True,
}

# psycopg's errors that mean the server is away or gave up on the statement.
_SERVER_AWAY = (psycopg.OperationalError, psycopg.InterfaceError)
_TABLE_GONE = (pg_errors.UndefinedTable, pg_errors.UndefinedColumn)


def _error(setting: str, problem: str) -> ConfigurationError:
    # The problem is a value, never part of the template: it may quote the URL's braces.
    return ConfigurationError(f"PostgresStore {{{setting}}} {{problem}}", setting, problem=problem)


class _Target:
    """Where the records live, parsed from a URL: the libpq keywords, and how to show them."""

    def __init__(self, url: str) -> None:
        try:
            parts = urlsplit(url.strip())
        except ValueError:
            raise _error("url", "is not a URL") from None
        if parts.scheme.lower() not in SCHEMES:
            raise _error("url", "must start with postgresql:// or postgres://")
        if parts.fragment:
            raise _error("url", "has a #fragment")
        try:
            self.user, self.password, hosts = credentials(parts)
        except ValueError as exc:
            raise _error("url", str(exc)) from None
        self.options = _query_options(parts)
        self.addresses = _addresses(hosts)
        self.dbname = unquote(parts.path.lstrip("/")) or None
        if self.dbname is not None and "/" in self.dbname:
            raise _error("url", "names one database: postgresql://host[:port]/database")
        if "host" in self.options and self.addresses:
            raise _error("url", "names its host both before the path and as ?host=")
        sslmode = self.options.get("sslmode")
        if sslmode is not None and sslmode not in _SSLMODES:
            raise _error("sslmode", f"must be one of {', '.join(_SSLMODES)}, not {sslmode!r}")

    def libpq(self) -> dict[str, Any]:
        """The keywords of ``psycopg.connect``, but the timeouts (the store adds those)."""
        keywords: dict[str, Any] = {
            name: value for name, value in self.options.items() if name in _LIBPQ_OPTIONS
        }
        if self.addresses:
            keywords["host"] = ",".join(host for host, _ in self.addresses)
            keywords["port"] = ",".join(str(port) for _, port in self.addresses)
        for name, value in (("user", self.user), ("password", self.password)):
            if value is not None:
                keywords[name] = value
        if self.dbname is not None:
            keywords["dbname"] = self.dbname
        return keywords

    def describe(self) -> str:
        """The URL without its password: for repr, logs, errors and ``check``."""
        user = ""
        if self.user is not None or self.password is not None:
            user = (self.user or "") + (":***" if self.password is not None else "") + "@"
        hosts = ",".join(
            (f"[{host}]" if ":" in host else host) + (f":{port}" if port != DEFAULT_PORT else "")
            for host, port in self.addresses
        )
        shown = f"postgresql://{user}{hosts}/{self.dbname or ''}"
        socket_dir = self.options.get("host")
        if socket_dir is not None:
            shown += f"?host={socket_dir}"
        return shown


def _query_options(parts: SplitResult) -> dict[str, Any]:
    try:
        return read_query(parts.query, _QUERY_OPTIONS)
    except BadOption as bad:
        shown = "***" if bad.name in _SECRET_OPTIONS else repr(bad.text)
        raise _error(bad.name, f"cannot be {shown}") from None
    except ValueError as exc:
        raise _error("url", str(exc)) from None


def _addresses(hosts: str) -> list[tuple[str, int]]:
    if not hosts:
        return []
    found = []
    for part in hosts.split(","):
        match = ADDRESS.fullmatch(part)
        if match is None:
            raise _error("url", "needs host[:port][,host[:port]...] before the database")
        port = int(match["port"] or DEFAULT_PORT)
        if not 0 < port < 65536:
            raise _error("url", f"has port {port}, not one from 1 to 65535")
        found.append((unquote(match["ipv6"] or match["host"]), port))
    return found


class _Exhausted(StoreUnavailable):
    """Every connection of the pool stayed busy for ``pool_timeout`` seconds."""


class _Pool:
    """One process's connections: idle ones reused newest first, at most ``size`` open.

    A caller that finds none idle while fewer than ``size`` are open connects
    itself; one that finds all busy waits up to ``wait`` seconds.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], size: int, wait: float):
        self._connect = connect
        self._size = size
        self._wait = wait
        self._idle: list[psycopg.Connection[Any]] = []
        self._open = 0
        self._ready = threading.Condition(threading.Lock())
        self.pid = os.getpid()

    def take(self) -> tuple[psycopg.Connection[Any], bool]:
        """A connection for this thread alone, and whether it is new."""
        with self._ready:
            if not self._idle and self._open >= self._size:
                deadline = time.monotonic() + self._wait
                while not self._idle and self._open >= self._size:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise _Exhausted(
                            f"all {self._size} connections stayed busy for {self._wait} s"
                        )
                    self._ready.wait(left)
            if self._idle:
                return self._idle.pop(), False
            self._open += 1
        try:
            return self._connect(), True
        except BaseException:
            self._forget()
            raise

    def give_back(self, connection: psycopg.Connection[Any]) -> None:
        """Return ``connection``; one that is broken, closed or mid-transaction is closed."""
        usable = (
            not connection.closed
            and not connection.broken
            and connection.info.transaction_status == TransactionStatus.IDLE
        )
        if not usable:
            self.discard(connection)
            return
        with self._ready:
            self._idle.append(connection)
            self._ready.notify()

    def discard(self, connection: psycopg.Connection[Any]) -> None:
        connection.close()
        self._forget()

    def drop_idle(self) -> None:
        """Close the idle connections (after a restart of the server they are all dead)."""
        with self._ready:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._ready.notify_all()
        for connection in idle:
            connection.close()

    def _forget(self) -> None:
        with self._ready:
            self._open -= 1
            self._ready.notify()


class PostgresStore:
    """Session records in a PostgreSQL table.

    ``url`` is ``postgresql://[user[:password]@][host[:port][,...]]/database``
    (or ``postgres://``), whose query may carry libpq's options (``sslmode``,
    ``sslrootcert``, ``application_name``, ``host=/socket/dir``, ...) and this
    store's keyword options (``?table=&statement_timeout=``), not both ways.
    ``user`` and ``password``, when given, replace the URL's.

    ``connect_timeout`` and ``statement_timeout`` bound each connect and each
    statement, in seconds (a statement held up by a lock is cancelled by the
    server and answers :class:`~wsgi_session.errors.StoreUnavailable`). At most
    ``pool_size`` connections are open per process; a request that finds them
    all busy for ``pool_timeout`` seconds is ``StoreUnavailable`` too. The
    table (``table``) is created on first use unless ``create_table=False``
    (then ``wsgi-session init`` creates it).

    Nothing connects at construction or import; each process opens its own
    connections on first use (a forked worker never uses its parent's). Thread-safe.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str | None = None,
        connect_timeout: float | None = None,
        statement_timeout: float | None = None,
        pool_size: int | None = None,
        pool_timeout: float | None = None,
        create_table: bool | None = None,
        user: str | None = None,
        password: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(url, str):
            raise _error("url", f"must be a string, got {type(url).__name__}")
        given = {
            name: value
            for name, value in (
                ("table", table),
                ("connect_timeout", connect_timeout),
                ("statement_timeout", statement_timeout),
                ("pool_size", pool_size),
                ("pool_timeout", pool_timeout),
                ("create_table", create_table),
            )
            if value is not None
        }
        self._target = _Target(url)
        if user is not None:
            self._target.user = user
        if password is not None:
            self._target.password = password
        both = sorted(set(given) & set(self._target.options))
        if both:
            raise _error(both[0], "is given both in the URL and as an argument")
        options = {**_DEFAULTS, **given}
        options.update((k, v) for k, v in self._target.options.items() if k in _OWN_OPTIONS)
        self.table = _check_table(options["table"])
        for name in ("connect_timeout", "statement_timeout", "pool_timeout"):
            check_seconds(name, options[name], minimum=0, whole=False, owner="PostgresStore ")
        self.connect_timeout = float(options["connect_timeout"])  # type: ignore[arg-type]
        self.statement_timeout = float(options["statement_timeout"])  # type: ignore[arg-type]
        self.pool_timeout = float(options["pool_timeout"])  # type: ignore[arg-type]
        size = options["pool_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise _error("pool_size", f"must be a whole number, at least 1, not {size!r}")
        self.pool_size = size
        self.create_table = bool(options["create_table"])
        self.where = self._target.describe()
        self._clock = clock
        self._sql = _Statements(self.table)
        self._lock = threading.Lock()
        self._pool: _Pool | None = None
        self._table_ready = False
        _IN_THIS_PROCESS.add(self)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        """The store a URL describes; its query may carry the keyword options."""
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r}, table={self.table!r})"

    # -- the Store protocol ----------------------------------------------------

    def load(self, key: str) -> tuple[bytes, Version] | None:
        """Return ``(data, version)`` for a live record, or ``None``: one ``SELECT``."""
        row = self._fetch_one(self._sql.load, (_key(key), self._clock()))
        return None if row is None else (bytes(row[0]), row[1])

    def save(self, key: str, data: bytes, ttl: int, version: Version | None = None) -> bool:
        """Create (``version=None``) or compare-and-set the record; ``False`` on conflict."""
        _key(key)
        check_record(data, ttl)
        check_counted_version(version)
        now = self._clock()
        if version is None:
            return self._write(self._sql.create, (key, data, now + ttl, now)) == 1
        return self._write(self._sql.replace, (data, now + ttl, key, version, now)) == 1

    def delete(self, key: str) -> None:
        """Remove the record; a missing record is not an error."""
        self._write(self._sql.delete, (_key(key),))

    def purge_expired(self) -> int:
        """Delete the expired rows, a small batch a statement; returns how many."""
        purged = 0
        while True:
            count = self._write(self._sql.purge, (self._clock(),))
            purged += count
            if count < PURGE_BATCH:
                return purged

    # -- the RecordScan protocol (wsgi-session stats) -----------------------------

    def records(self) -> Iterator[bytes]:
        """Each row's record not past its store expiry, read in batches by a server cursor."""
        try:
            with (
                self._connection() as connection,
                connection.transaction(),
                connection.cursor(name="wsgi_session_scan") as cursor,
            ):
                cursor.itersize = SCAN_BATCH
                cursor.execute(self._sql.scan, (self._clock(),))
                for (data,) in cursor:
                    yield bytes(data)
        except _SERVER_AWAY as exc:
            raise self._unavailable(exc) from exc

    def record_count(self) -> int | None:
        row = self._fetch_one(self._sql.count, (self._clock(),))
        return int(row[0])

    def figures(self) -> dict[str, int]:
        """The table's size on disk, its indexes included."""
        (size,) = self._fetch_one(_SIZE, (f'"{self.table}"',))
        return {"table bytes": int(size)}

    # -- the OwnerIndex protocol: an indexed column of the record's own row ------

    def index_owner(self, owner: str, key: str, until: int) -> None:
        """Mark the row as ``owner``'s; the row's own expiry says how long (``until`` unused)."""
        self._write(self._sql.index, (owner, _key(key)))

    def unindex_owner(self, owner: str, key: str) -> None:
        self._write(self._sql.unindex, (_key(key), owner))

    def owned(self, owner: str) -> list[str]:
        return [key for (key,) in self._fetch_all(self._sql.owned, (owner, self._clock()))]

    # -- the Schema protocol ---------------------------------------------------------

    def create_schema(self) -> None:
        """Create the table and its indexes if missing (``wsgi-session init``)."""
        with self._connection() as connection:
            self._create_table(connection)

    def schema_problems(self) -> list[str]:
        """What is wrong with the table (a column missing or of another type; missing
        while ``create_table=False``)."""
        with self._connection(ensure=False) as connection:
            rows = connection.execute(_COLUMN_TYPES, (self.table,)).fetchall()
        found = dict(rows)
        if not found:
            if self.create_table:
                return []  # the first use creates it
            return [f"the table {self.table!r} does not exist (wsgi-session init creates it)"]
        return [
            f"the table {self.table!r} has no column {name!r} of type {kind}"
            if name not in found
            else f"the column {self.table}.{name} is {found[name]}, not {kind}"
            for name, kind in COLUMNS.items()
            if found.get(name) != kind
        ]

    def close(self) -> None:
        """Close this process's idle connections; the next call opens new ones."""
        with self._lock:
            pool = self._pool
            if pool is None or pool.pid != os.getpid():
                return
            self._pool = None
        pool.drop_idle()

    # -- plumbing ------------------------------------------------------------------

    def _forked(self) -> None:
        """In a forked child: set the parent's pool aside, unused and never closed."""
        pool, self._pool = self._pool, None
        if pool is not None and pool.pid != os.getpid():
            _INHERITED.append(pool)
        self._lock = threading.Lock()  # another thread may have held it at the fork

    def _fetch_one(self, sql: str, params: tuple[object, ...]) -> Any:
        return self._run(sql, params, lambda cursor: cursor.fetchone())

    def _fetch_all(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        return self._run(sql, params, lambda cursor: cursor.fetchall())

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        return self._run(sql, params, lambda cursor: cursor.rowcount)

    def _run(
        self, sql: str, params: tuple[object, ...], result: Callable[[psycopg.Cursor[Any]], T]
    ) -> T:
        for attempt in (1, 2):
            with self._lease() as (connection, fresh):
                try:
                    return result(connection.execute(sql, params))
                except _TABLE_GONE as exc:
                    self._table_ready = False  # dropped under us: the next call creates it again
                    raise self._unavailable(exc) from exc
                except psycopg.DataError as exc:
                    raise StoreWriteFailed(
                        f"PostgreSQL session store at {self.where}: {exc}"
                    ) from exc
                except _SERVER_AWAY as exc:
                    # A pooled connection the server dropped since its last use (a
                    # restart): tried once more on a new one, as nothing was answered.
                    if attempt == 1 and connection.broken and not fresh:
                        self._pool_for_this_process().drop_idle()
                        continue
                    raise self._unavailable(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _connection(self, ensure: bool = True) -> Iterator[psycopg.Connection[Any]]:
        with self._lease(ensure) as (connection, _fresh):
            yield connection

    @contextmanager
    def _lease(self, ensure: bool = True) -> Iterator[tuple[psycopg.Connection[Any], bool]]:
        """A connection of this process's pool, and whether it is new, for one statement."""
        pool = self._pool_for_this_process()
        try:
            connection, fresh = pool.take()
        except _Exhausted as exc:
            raise StoreUnavailable(f"PostgreSQL session store at {self.where}: {exc}") from None
        except _SERVER_AWAY as exc:
            raise self._unavailable(exc) from exc
        try:
            if ensure and not self._table_ready:
                self._ensure_table(connection)
            yield connection, fresh
        finally:
            pool.give_back(connection)

    def _ensure_table(self, connection: psycopg.Connection[Any]) -> None:
        try:
            if self.create_table:
                self._create_table(connection)
            self._table_ready = True
        except _SERVER_AWAY as exc:
            raise self._unavailable(exc) from exc

    def _create_table(self, connection: psycopg.Connection[Any]) -> None:
        # Looked up first: CREATE ... IF NOT EXISTS takes locks even when the table
        # is there, and would wait behind whoever holds one on it.
        if connection.execute(_EXISTS, (f'"{self.table}"',)).fetchone() == (True,):
            return
        with connection.transaction():
            connection.execute(_SCHEMA_LOCK, (self.table,))
            for statement in self._sql.schema:
                connection.execute(statement)

    def _pool_for_this_process(self) -> _Pool:
        pool = self._pool
        if pool is not None and pool.pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is not None and self._pool.pid != os.getpid():
                _INHERITED.append(self._pool)  # forked without Python's hooks (a C library's fork)
            if self._pool is None or self._pool.pid != os.getpid():
                self._pool = _Pool(self._connect, self.pool_size, self.pool_timeout)
            return self._pool

    def _connect(self) -> psycopg.Connection[Any]:
        keywords = self._target.libpq()
        keywords["connect_timeout"] = max(1, round(self.connect_timeout))
        timeout = f"-c statement_timeout={max(1, round(self.statement_timeout * 1000))}"
        keywords["options"] = (
            f"{keywords['options']} {timeout}" if "options" in keywords else timeout
        )
        return psycopg.connect(**keywords, autocommit=True)

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StoreUnavailable(f"PostgreSQL session store at {self.where}: {detail}")


class _Statements:
    """The SQL of one table, formatted once."""

    def __init__(self, table: str) -> None:
        self.schema: Sequence[str] = tuple(part.format(table=table) for part in _SCHEMA)
        self.load = _LOAD.format(table=table)
        self.create = _CREATE.format(table=table)
        self.replace = _REPLACE.format(table=table)
        self.delete = _DELETE.format(table=table)
        self.purge = _PURGE.format(table=table, batch=PURGE_BATCH)
        self.index = _INDEX.format(table=table)
        self.unindex = _UNINDEX.format(table=table)
        self.owned = _OWNED.format(table=table)
        self.scan = _SCAN.format(table=table)
        self.count = _COUNT.format(table=table)


def _check_table(table: object) -> str:
    if not isinstance(table, str) or not _IDENTIFIER.match(table):
        raise ConfigurationError(
            "PostgresStore {table}: {value!r} is not a plain SQL identifier", "table", value=table
        )
    return table


def _key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"key must be a non-empty string, got {key!r}")
    return key


_IN_THIS_PROCESS: weakref.WeakSet[PostgresStore] = weakref.WeakSet()
_INHERITED: list[_Pool] = []


def _after_fork_in_child() -> None:
    # The parent's connections stay the parent's: closing one here, even by garbage
    # collection, would end its session on the server. Kept referenced, never used.
    for store in list(_IN_THIS_PROCESS):
        store._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
