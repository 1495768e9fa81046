"""Session records in one SQLite file, shared by every process on one machine."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from wsgi_session.errors import ConfigurationError, StoreUnavailable, StoreWriteFailed
from wsgi_session.stores.base import Version

log = logging.getLogger("wsgi_session")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# {table} is only ever filled in with a name that matched _IDENTIFIER.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS "{table}" (
    key TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    version INTEGER NOT NULL,
    expires REAL NOT NULL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS "{table}_expires" ON "{table}" (expires);
"""
# Tables created before the owner column get it in place (ALTER TABLE ADD
# COLUMN is instant: no row is rewritten). Only owned rows are indexed.
_COLUMNS = 'PRAGMA table_info("{table}")'
_ADD_OWNER = 'ALTER TABLE "{table}" ADD COLUMN owner TEXT'
_OWNER_INDEX = """
CREATE INDEX IF NOT EXISTS "{table}_owner" ON "{table}" (owner) WHERE owner IS NOT NULL
"""
_LOAD = 'SELECT data, version FROM "{table}" WHERE key = ? AND expires > ?'
# An expired record is as good as absent, so creating over it is allowed; its
# version keeps counting up so that an old token can never match again.
_CREATE = """
INSERT INTO "{table}" (key, data, version, expires) VALUES (?, ?, 1, ?)
ON CONFLICT (key) DO UPDATE
SET data = excluded.data, version = version + 1, expires = excluded.expires, owner = NULL
WHERE expires <= ?
"""
_REPLACE = """
UPDATE "{table}" SET data = ?, version = version + 1, expires = ?
WHERE key = ? AND version = ? AND expires > ?
"""
# The same, listing the row under its owner in the same statement (IndexedWrites).
_CREATE_OWNED = """
INSERT INTO "{table}" (key, data, version, expires, owner) VALUES (?, ?, 1, ?, ?)
ON CONFLICT (key) DO UPDATE
SET data = excluded.data, version = version + 1, expires = excluded.expires, owner = excluded.owner
WHERE expires <= ?
"""
_REPLACE_OWNED = """
UPDATE "{table}" SET data = ?, version = version + 1, expires = ?, owner = ?
WHERE key = ? AND version = ? AND expires > ?
"""
_DELETE = 'DELETE FROM "{table}" WHERE key = ?'
_PURGE = 'DELETE FROM "{table}" WHERE expires <= ?'
# The bulk copy's: every record with its key and expiry, in key order, in batches.
_KEYED = 'SELECT key, data, expires FROM "{table}" WHERE key > ? ORDER BY key LIMIT ?'
_ALL = 'SELECT COUNT(*) FROM "{table}"'
KEYED_BATCH = 500
_INDEX = 'UPDATE "{table}" SET owner = ? WHERE key = ?'
_UNINDEX = 'UPDATE "{table}" SET owner = NULL WHERE key = ? AND owner = ?'
_OWNED = 'SELECT key FROM "{table}" WHERE owner = ? AND expires > ?'
_SCAN = 'SELECT data FROM "{table}" WHERE expires > ?'
_COUNT = 'SELECT COUNT(*) FROM "{table}" WHERE expires > ?'

# Errors that mean the calling code is wrong, not that the database is away.
_CALLER_BUGS = (sqlite3.ProgrammingError, sqlite3.IntegrityError)

# The pid is refreshed by a fork hook rather than asked for on every call:
# os.getpid() is a system call, and it would sit on every load and save.
_pid = os.getpid()

# SQLite forbids using, or even closing, a connection inherited through fork:
# either can corrupt the file under the parent. Such connections are kept
# referenced here so that garbage collection never closes them in the child.
_inherited: list[sqlite3.Connection] = []

_stores: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


def default_path() -> Path:
    """The file a store without an explicit path uses, in the XDG state directory."""
    state = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "wsgi_session" / "sessions.sqlite3"


class SQLiteStore:
    """Store records in a SQLite file, safe across threads and processes.

    Each thread of each process opens its own connection on first use;
    nothing is opened at construction, and a connection never crosses a fork
    (pre-forking servers may build the store before forking). Compare-and-set
    uses a version column, so writers in different processes never overwrite
    each other.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        table: str = "wsgi_sessions",
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(table, str) or not _IDENTIFIER.match(table):
            raise ConfigurationError(
                "{table}: {value!r} is not a plain SQL identifier", "table", value=table
            )
        if table.lower().startswith("sqlite_"):
            raise ConfigurationError(
                "{table}: {value!r} is reserved by SQLite", "table", value=table
            )
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout >= 0):
            raise ConfigurationError(
                "{timeout}: {value!r} is not a number of seconds >= 0", "timeout", value=timeout
            )
        self.path = default_path() if path is None else Path(path)
        if path is None:
            log.info("sessions are stored in %s (the default location)", self.path)
        if str(self.path) == ":memory:":
            raise ConfigurationError(
                "{path}: an in-memory database is private to one connection; use MemoryStore",
                "path",
            )
        self._timeout = float(timeout)
        self._clock = clock
        self._local = threading.local()
        self._schema, self._load, self._create, self._replace, self._delete, self._purge = (
            template.format(table=table)
            for template in (_SCHEMA, _LOAD, _CREATE, _REPLACE, _DELETE, _PURGE)
        )
        self._columns, self._add_owner, self._owner_index = (
            template.format(table=table) for template in (_COLUMNS, _ADD_OWNER, _OWNER_INDEX)
        )
        self._index, self._unindex, self._owned, self._create_owned, self._replace_owned = (
            template.format(table=table)
            for template in (_INDEX, _UNINDEX, _OWNED, _CREATE_OWNED, _REPLACE_OWNED)
        )
        self._scan, self._count = (template.format(table=table) for template in (_SCAN, _COUNT))
        self._keyed, self._all = (template.format(table=table) for template in (_KEYED, _ALL))
        _stores.add(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def load(self, key: str) -> tuple[bytes, Version] | None:
        """Return ``(data, version)`` for a live record, or ``None``."""
        try:
            row: tuple[bytes, int] | None = (
                self._connection().execute(self._load, (key, self._clock())).fetchone()
            )
        except _CALLER_BUGS:
            raise
        except sqlite3.DatabaseError as exc:
            raise self._unavailable(exc) from exc
        return row

    def save(self, key: str, data: bytes, ttl: int, version: Version | None = None) -> bool:
        """Create (``version=None``) or compare-and-set a record; ``False`` on conflict."""
        now = self._clock()
        if version is None:
            return self._write(self._create, (key, data, now + ttl, now)) == 1
        return self._write(self._replace, (data, now + ttl, key, version, now)) == 1

    def delete(self, key: str) -> None:
        """Remove the record; deleting a missing record is not an error."""
        self._write(self._delete, (key,))

    def purge_expired(self) -> int:
        """Delete every expired record and return how many there were."""
        return self._write(self._purge, (self._clock(),))

    # -- the KeyedScan protocol (the bulk copy): batches in key order ----------

    def scan(self, after: str | None = None) -> Iterator[tuple[str, bytes, float]]:
        position = "" if after is None else after
        while True:
            rows: list[tuple[str, bytes, float]] = self._read(self._keyed, (position, KEYED_BATCH))
            now = self._clock()
            for key, data, expires in rows:
                yield key, data, expires - now
            if len(rows) < KEYED_BATCH:
                return
            position = rows[-1][0]

    def count(self) -> int:
        ((count,),) = self._read(self._all, ())
        return int(count)

    def _read(self, sql: str, params: tuple[object, ...]) -> list[Any]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except _CALLER_BUGS:
            raise
        except sqlite3.DatabaseError as exc:
            raise self._unavailable(exc) from exc

    # -- the RecordScan protocol -------------------------------------------------------

    def records(self) -> Iterator[bytes]:
        """Each live record's data, read in one statement (a snapshot, with WAL)."""
        try:
            rows = self._connection().execute(self._scan, (self._clock(),))
            for (data,) in rows:
                yield bytes(data)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    def record_count(self) -> int | None:
        try:
            (count,) = self._connection().execute(self._count, (self._clock(),)).fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        return int(count)

    def figures(self) -> dict[str, int]:
        """The database file's size, and its write-ahead log's."""
        found = {}
        for name, path in (("file bytes", self.path), ("WAL bytes", Path(f"{self.path}-wal"))):
            with contextlib.suppress(OSError):
                found[name] = path.stat().st_size
        return found

    # -- the OwnerIndex protocol: an indexed column of the record's own row ------

    def index_owner(self, owner: str, key: str, until: int) -> None:
        """Mark the row as ``owner``'s; the row's own expiry says how long (``until`` unused)."""
        self._write(self._index, (owner, key))

    def unindex_owner(self, owner: str, key: str) -> None:
        self._write(self._unindex, (key, owner))

    # -- IndexedWrites: the owner column is written by the record's own statement ----

    def save_indexed(
        self, key: str, data: bytes, ttl: int, version: Version | None, owner: str, until: int
    ) -> bool:
        """:meth:`save` and :meth:`index_owner` in one statement."""
        now = self._clock()
        if version is None:
            return self._write(self._create_owned, (key, data, now + ttl, owner, now)) == 1
        return self._write(self._replace_owned, (data, now + ttl, owner, key, version, now)) == 1

    def delete_indexed(self, key: str, owner: str) -> None:
        """The row's deletion takes its owner column with it."""
        self._write(self._delete, (key,))

    def owned(self, owner: str) -> list[str]:
        try:
            rows = self._connection().execute(self._owned, (owner, self._clock())).fetchall()
        except _CALLER_BUGS:
            raise
        except sqlite3.DatabaseError as exc:
            raise self._unavailable(exc) from exc
        return [key for (key,) in rows]

    def close(self) -> None:
        """Close the calling thread's connection; the next call opens a new one."""
        owned: tuple[int, sqlite3.Connection] | None = self._local.__dict__.pop("owned", None)
        if owned is None:
            return
        pid, connection = owned
        if pid == _pid:
            connection.close()
        else:
            _inherited.append(connection)

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        try:
            return self._connection().execute(sql, params).rowcount
        except _CALLER_BUGS:
            raise
        except sqlite3.DataError as exc:  # the database is up; it refused this value
            raise StoreWriteFailed(f"SQLite session store at {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise self._unavailable(exc) from exc

    def _connection(self) -> sqlite3.Connection:
        owned: tuple[int, sqlite3.Connection] | None = getattr(self._local, "owned", None)
        if owned is not None and owned[0] == _pid:
            return owned[1]
        return self._connect()

    def _connect(self) -> sqlite3.Connection:
        self.close()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Created up front so that the file, and the -wal and -shm files
            # SQLite gives the same mode, are private to the owner.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise self._unavailable(exc) from exc
        connection = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        try:
            self._use_wal(connection)
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.executescript(self._schema)
            self._migrate(connection)
        except BaseException:
            connection.close()
            raise
        self._local.owned = (_pid, connection)
        return connection

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Add the owner column to a table an older version created, and index it."""
        columns = {row[1] for row in connection.execute(self._columns)}
        if "owner" not in columns:
            try:
                connection.execute(self._add_owner)
            except sqlite3.OperationalError as exc:
                # Another worker opening the file at the same moment added it first.
                if "duplicate column" not in str(exc):
                    raise
        connection.execute(self._owner_index)

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        # Switching a file to WAL upgrades a read lock to a write lock, which
        # SQLite refuses at once instead of waiting (waiting could deadlock).
        # When several workers open a new file together, the losers retry.
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.001)

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"SQLite session store at {self.path}: {exc}")


def _close_before_fork() -> None:
    # A child must not inherit open connections (see _inherited); closing the
    # forking thread's ones also leaves SQLite's per-process lock state clean.
    for store in list(_stores):
        store.close()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_before_fork, after_in_child=_after_fork_in_child)
