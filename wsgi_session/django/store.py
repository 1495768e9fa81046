"""``WSGI_SESSION_STORE = "django://ALIAS"``: session records in a table of a Django database.

The statements run through Django's own database layer for ``ALIAS`` (a key of
``DATABASES``), with the project's credentials, ``OPTIONS`` and ``CONN_MAX_AGE``:
plain SQL, the names quoted and the batch limit spelled by the backend (tested
on PostgreSQL, MariaDB and SQLite). The table is the
``wsgi_session.django`` app's (its migration creates it): the hashed key as
primary key, the record, a version counter, the expiry (indexed) and the
owner column of the per-user index, as :class:`~wsgi_session.stores.postgres.PostgresStore`
keeps them. Every operation is one statement in autocommit (a create that
finds an expired row under its key takes a second one, to reuse it).

Under ``ATOMIC_REQUESTS`` (or any ``transaction.atomic`` block) the view's
transaction must neither roll a session write back nor hold it up, so while
Django's connection is in a transaction the statements go to a second
connection of this thread to the same database, in autocommit. Django's own
policy (``CONN_MAX_AGE``) closes it at the start and the end of each request,
as it does Django's connection; outside a request it is closed after each
statement. SQLite is the exception: its one
writer would make that second connection wait for the view's transaction,
and the view for it, so on SQLite the statements stay on Django's connection
and are part of the view's transaction (rolled back with it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

from django.core.signals import request_finished, request_started
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import DataError, InterfaceError, OperationalError, ProgrammingError

from wsgi_session.errors import ConfigurationError, StoreUnavailable, StoreWriteFailed
from wsgi_session.stores.base import Version, check_counted_version, check_record

__all__ = ["SCHEME", "TABLE", "DjangoDatabaseStore"]

T = TypeVar("T")

SCHEME = "django"
TABLE = "wsgi_session_record"
"""The table the ``wsgi_session.django`` app's migration creates."""
COLUMNS = ("key", "data", "version", "expires", "owner")
PURGE_BATCH = 500
_SERVER_AWAY = (OperationalError, InterfaceError)


class _SideConnections(threading.local):
    """This thread's second connection to each alias, for statements outside the view's."""

    def __init__(self) -> None:
        self.by_alias: dict[str, BaseDatabaseWrapper] = {}
        self.in_request = False


_side = _SideConnections()


def _request_started(**kwargs: object) -> None:
    _side.in_request = True
    _close_obsolete()


def _request_finished(**kwargs: object) -> None:
    _side.in_request = False
    _close_obsolete()


def _close_obsolete() -> None:
    # The policy Django applies to its own connections at the same moments.
    for connection in _side.by_alias.values():
        connection.close_if_unusable_or_obsolete()


request_started.connect(_request_started)
request_finished.connect(_request_finished)


class DjangoDatabaseStore:
    """Session records in the ``wsgi_session.django`` app's table of database ``alias``."""

    def __init__(
        self, alias: str = DEFAULT_DB_ALIAS, *, clock: Callable[[], float] = time.time
    ) -> None:
        if alias not in connections:
            known = ", ".join(repr(name) for name in connections) or "none"
            raise ConfigurationError(
                "{WSGI_SESSION_STORE}: django://{alias} names no database of DATABASES "
                "(configured: {known})",
                "WSGI_SESSION_STORE",
                alias=alias,
                known=known,
            )
        self.alias = alias
        self._clock = clock
        self._sql: _Statements | None = None

    @classmethod
    def from_url(cls, url: str) -> DjangoDatabaseStore:
        """``django://ALIAS`` (``django://`` alone: the ``default`` database)."""
        parts = urlsplit(url.strip())
        if parts.scheme.lower() != SCHEME or parts.path.strip("/") or parts.query or parts.fragment:
            raise ConfigurationError(
                "{WSGI_SESSION_STORE}: write django://ALIAS, the alias of a database in "
                "DATABASES, not {url!r}",
                "WSGI_SESSION_STORE",
                url=url,
            )
        return cls(parts.netloc or DEFAULT_DB_ALIAS)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.alias!r})"

    @property
    def where(self) -> str:
        return f"table {TABLE} of the Django database {self.alias!r}"

    # -- the Store protocol ----------------------------------------------------

    def load(self, key: str) -> tuple[bytes, Version] | None:
        with self._cursor() as (cursor, sql):
            cursor.execute(sql.load, (key, self._clock()))
            row = cursor.fetchone()
        return None if row is None else (bytes(row[0]), int(row[1]))

    def save(self, key: str, data: bytes, ttl: int, version: Version | None = None) -> bool:
        check_record(data, ttl)
        check_counted_version(version)
        now = self._clock()
        with self._cursor() as (cursor, sql):
            if version is not None:
                cursor.execute(sql.replace, (data, now + ttl, key, version, now))
                return bool(cursor.rowcount == 1)
            try:
                cursor.execute(sql.insert, (key, data, now + ttl))
            except IntegrityError:
                # The key is taken: by a live record (a conflict), or an expired one,
                # which is as good as absent and is reused.
                cursor.execute(sql.reuse, (data, now + ttl, key, now))
                return bool(cursor.rowcount == 1)
            return True

    def delete(self, key: str) -> None:
        with self._cursor() as (cursor, sql):
            cursor.execute(sql.delete, (key,))

    def purge_expired(self) -> int:
        """Delete expired rows, a small batch at a time (``manage.py clearsessions``)."""
        purged = 0
        while True:
            now = self._clock()
            with self._cursor() as (cursor, sql):
                cursor.execute(sql.expired, (now,))
                keys = [key for (key,) in cursor.fetchall()]
                if keys:
                    marks = ", ".join(["%s"] * len(keys))
                    cursor.execute(sql.purge.format(keys=marks), (*keys, now))
                    purged += cursor.rowcount
            if len(keys) < PURGE_BATCH:
                return purged

    # -- the OwnerIndex protocol: an indexed column of the record's own row ------

    def index_owner(self, owner: str, key: str, until: int) -> None:
        with self._cursor() as (cursor, sql):
            cursor.execute(sql.index, (owner, key))

    def unindex_owner(self, owner: str, key: str) -> None:
        with self._cursor() as (cursor, sql):
            cursor.execute(sql.unindex, (key, owner))

    def owned(self, owner: str) -> list[str]:
        with self._cursor() as (cursor, sql):
            cursor.execute(sql.owned, (owner, self._clock()))
            return [key for (key,) in cursor.fetchall()]

    # -- the Schema protocol ---------------------------------------------------------

    def create_schema(self) -> None:
        """Apply the ``wsgi_session`` app's migrations to this database."""
        from django.core.management import call_command

        call_command("migrate", "wsgi_session", database=self.alias, verbosity=0)

    def has_table(self) -> bool:
        """Whether the table is there (the app's migration was applied)."""
        return TABLE in self._introspect(lambda cursor, look: look.table_names(cursor))

    def schema_problems(self) -> list[str]:
        if not self.has_table():
            return [
                f"the table {TABLE} is missing from the database {self.alias!r}: add "
                "'wsgi_session.django' to INSTALLED_APPS and run manage.py migrate"
            ]
        found = {
            column.name
            for column in self._introspect(
                lambda cursor, look: look.get_table_description(cursor, TABLE)
            )
        }
        return [
            f"the table {TABLE} has no column {name!r} (not made by wsgi_session's migration?)"
            for name in COLUMNS
            if name not in found
        ]

    def close(self) -> None:
        """Close this thread's second connection, if it has one (Django's own is Django's)."""
        side = _side.by_alias.pop(self.alias, None)
        if side is not None:
            side.close()

    # -- plumbing ------------------------------------------------------------------

    def _introspect(self, look: Callable[[Any, Any], T]) -> T:
        connection = connections[self.alias]
        try:
            with connection.cursor() as cursor:
                return look(cursor, connection.introspection)
        except _SERVER_AWAY as exc:
            raise self._unavailable(exc) from exc

    @contextmanager
    def _cursor(self) -> Iterator[tuple[Any, _Statements]]:
        connection, side = self._connection()
        sql = self._statements(connection)
        try:
            with connection.cursor() as cursor:
                yield cursor, sql
        except _SERVER_AWAY as exc:
            raise self._unavailable(exc) from exc
        except ProgrammingError as exc:  # the table is missing, most likely
            raise self._unavailable(exc) from exc
        except DataError as exc:
            raise StoreWriteFailed(f"{self.where}: {exc}") from exc
        except DatabaseError as exc:
            raise self._unavailable(exc) from exc
        finally:
            if side and not _side.in_request:
                connection.close()  # nobody would close it: a test, a command

    def _connection(self) -> tuple[BaseDatabaseWrapper, bool]:
        """Django's connection, or this thread's second one while Django's is in a transaction."""
        own = connections[self.alias]
        if own.vendor == "sqlite" or (own.get_autocommit() and not own.in_atomic_block):
            return own, False
        side = _side.by_alias.get(self.alias)
        if side is None:
            side = _side.by_alias[self.alias] = connections.create_connection(self.alias)
        return side, True

    def _statements(self, connection: BaseDatabaseWrapper) -> _Statements:
        if self._sql is None:
            self._sql = _Statements(
                connection.ops.quote_name, connection.ops.limit_offset_sql(0, PURGE_BATCH)
            )
        return self._sql

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StoreUnavailable(f"session store {self.where}: {detail}")


class _Statements:
    """The SQL for the table, with names quoted the way the database wants them."""

    def __init__(self, quote: Callable[[str], str], first_batch: str) -> None:
        table = quote(TABLE)
        key, data, version, expires, owner = (quote(name) for name in COLUMNS)
        self.load = f"SELECT {data}, {version} FROM {table} WHERE {key} = %s AND {expires} > %s"  # noqa: S608
        self.insert = (
            f"INSERT INTO {table} ({key}, {data}, {version}, {expires}, {owner}) "  # noqa: S608
            "VALUES (%s, %s, 1, %s, NULL)"
        )
        # An expired record's version keeps counting up: an old token never matches again.
        self.reuse = (
            f"UPDATE {table} SET {data} = %s, {version} = {version} + 1, {expires} = %s, "  # noqa: S608
            f"{owner} = NULL WHERE {key} = %s AND {expires} <= %s"
        )
        self.replace = (
            f"UPDATE {table} SET {data} = %s, {version} = {version} + 1, {expires} = %s "  # noqa: S608
            f"WHERE {key} = %s AND {version} = %s AND {expires} > %s"
        )
        self.delete = f"DELETE FROM {table} WHERE {key} = %s"  # noqa: S608
        # first_batch: LIMIT, or FETCH FIRST where the database spells it so (Oracle).
        self.expired = (
            f"SELECT {key} FROM {table} WHERE {expires} <= %s ORDER BY {expires} "  # noqa: S608
            f"{first_batch}"
        )
        # {keys} is filled in with one placeholder a key.
        self.purge = f"DELETE FROM {table} WHERE {key} IN ({{keys}}) AND {expires} <= %s"  # noqa: S608
        self.index = f"UPDATE {table} SET {owner} = %s WHERE {key} = %s"  # noqa: S608
        self.unindex = f"UPDATE {table} SET {owner} = NULL WHERE {key} = %s AND {owner} = %s"  # noqa: S608
        self.owned = f"SELECT {key} FROM {table} WHERE {owner} = %s AND {expires} > %s"  # noqa: S608
