"""The contract every server-side store implements.

Keys are opaque ASCII strings (the middleware passes a hash of the session id,
never the id). Values are bytes. A *version* is an opaque token used for
compare-and-set: whatever ``load`` returned is handed back to ``save``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, runtime_checkable
from urllib.parse import SplitResult, parse_qsl, unquote

Version = object
"""Opaque compare-and-set token: a row version, a memcached CAS unique, ..."""


@runtime_checkable
class Store(Protocol):
    """Server-side storage for session records.

    Every method raises :class:`~wsgi_session.errors.StoreUnavailable` when the
    backing server cannot be reached. None of them may report success for a
    write the server did not acknowledge.
    """

    def load(self, key: str) -> tuple[bytes, Version] | None:
        """Return ``(data, version)`` for a live record, or ``None``."""
        ...

    def save(self, key: str, data: bytes, ttl: int, version: Version | None = None) -> bool:
        """Write ``data``, to expire after ``ttl`` seconds.

        ``version=None`` creates the record only if it does not exist yet;
        otherwise the record is replaced only if it still has ``version``.
        Returns ``False`` on a conflict (the record exists, changed or vanished).
        """
        ...

    def delete(self, key: str) -> None:
        """Remove the record; deleting a missing record is not an error."""
        ...


@runtime_checkable
class OwnerIndex(Protocol):
    """Optional: which records belong to an owner, so a user's sessions can be listed.

    A store that implements these three methods gets ``sessions.of()`` and
    ``sessions.revoke()``; one that does not still keeps sessions, without them.
    ``owner`` is an opaque ASCII token (a keyed hash, never a user id in
    clear); ``key`` is a record's key. The index only points at records: a key
    whose record is gone is harmless (listings load each record and skip it).

    ``until`` is when the entry may be dropped (POSIX seconds): the record's
    header says until when it is indexed, and its writer indexes it again
    before that passes, so a live record is always listed.
    """

    def index_owner(self, owner: str, key: str, until: int) -> None:
        """List ``key`` under ``owner`` until ``until``; drop entries past theirs."""
        ...

    def unindex_owner(self, owner: str, key: str) -> None:
        """Stop listing ``key`` under ``owner``; a missing entry is not an error."""
        ...

    def owned(self, owner: str) -> list[str]:
        """The keys listed under ``owner`` and not yet past their ``until``."""
        ...


@runtime_checkable
class Schema(Protocol):
    """Optional: a store whose records live in a database table it can create and inspect.

    ``wsgi-session init`` and ``wsgi-session check`` (and Django's system
    checks) use it. Both raise ``StoreUnavailable`` when the database cannot
    be reached.
    """

    def create_schema(self) -> None:
        """Create the table and its indexes if missing."""
        ...

    def schema_problems(self) -> list[str]:
        """What keeps the table from working (missing, a column missing or of another type).

        A missing table the store creates on first use is no problem.
        """
        ...


# -- URLs with credentials and servers (Redis, PostgreSQL) ----------------------------------

ADDRESS = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]/,@]+))(?::(?P<port>\d+))?"
)
"""``host[:port]`` or ``[ipv6][:port]``: one server of a URL's comma-separated list."""


def credentials(parts: SplitResult) -> tuple[str | None, str | None, str]:
    """``(user, password, servers)`` of a URL's location, unquoted; ``None``: not given.

    ``ValueError`` when an '@' comes after the host: a password with a "/" or
    "?" ends the host early, and what follows is no host, path or option (and
    naming it in an error would show the password).
    """
    if "@" in parts.path + parts.query:
        raise ValueError(
            "has an '@' after its host: percent-encode '/', '?', '#' and '@' in a user "
            "name, password or option (%2F, %3F, %23, %40)"
        )
    userinfo, _, servers = parts.netloc.rpartition("@")
    user, has_password, password = userinfo.partition(":")
    return unquote(user) or None, unquote(password) if has_password else None, servers


@runtime_checkable
class IndexedWrites(Protocol):
    """Optional, for an :class:`OwnerIndex`: a record's write and its index change together.

    A login writes a record and lists it under its owner, a logout deletes a
    record and its entry: a store that can do both in one round trip (one
    script, one statement, one transaction) implements these, and the backend
    calls them instead of two methods. Same arguments, results and errors as
    the calls they stand for.
    """

    def save_indexed(
        self, key: str, data: bytes, ttl: int, version: Version | None, owner: str, until: int
    ) -> bool:
        """:meth:`Store.save`; where it took, :meth:`OwnerIndex.index_owner` of ``key`` too."""
        ...

    def delete_indexed(self, key: str, owner: str) -> None:
        """:meth:`Store.delete` and :meth:`OwnerIndex.unindex_owner` of ``key``."""
        ...


@runtime_checkable
class RecordScan(Protocol):
    """Optional: every record the store holds, and its own size figures (``wsgi-session stats``).

    ``records`` may include records past their expiry that the store has
    not dropped yet, forwards and emptied records: the reader tells them
    apart from their headers. A store that cannot list its records cheaply
    (memcached has no key listing meant for it) still gives ``figures``.
    """

    def records(self) -> Iterator[bytes]:
        """Each stored record's data, in no particular order."""
        ...

    def record_count(self) -> int | None:
        """About how many records :meth:`records` goes through (a progress bar's total)."""
        ...

    def figures(self) -> dict[str, int]:
        """The store's own size figures, by name (``file bytes``, ``used memory bytes``)."""
        ...


@runtime_checkable
class KeyedScan(Protocol):
    """Optional: every record with its key and time left, in key order (``wsgi-session migrate``).

    A store that cannot list its records (memcached) can still be the copy's target.
    """

    def scan(self, after: str | None = None) -> Iterator[tuple[str, bytes, float]]:
        """``(key, data, seconds left)`` of each record whose key sorts after ``after``.

        In key order, so a copy stopped midway resumes after the last key it
        copied. Expired records a store still keeps come with seconds left <= 0.
        """
        ...

    def count(self) -> int:
        """How many records the scan will go through (for a progress bar)."""
        ...


# -- what save() is given --------------------------------------------------------------
# The same arguments are checked the same way by every store that writes them itself.


def check_record(data: object, ttl: object) -> None:
    """``data`` is bytes and ``ttl`` a whole number of seconds, at least 1."""
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
        raise ValueError(f"ttl must be a whole number of seconds, at least 1, got {ttl!r}")


def check_counted_version(version: object) -> None:
    """A table store's version: ``None`` (create) or the whole number ``load`` returned."""
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ValueError(f"version must be one load() returned, got {version!r}")


# -- URL query options -----------------------------------------------------------------
# Read here once for the stores' own URLs (Redis, PostgreSQL) and config/'s store URLs and flags.

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def parse_flag(text: str) -> bool:
    """true/false, also yes/no, on/off, 1/0 (any case); ``ValueError`` otherwise."""
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("not a boolean")


class BadOption(ValueError):
    """A query option whose value its reader refused: ``name`` and ``text`` say which."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(f"option {name}={text!r} is not valid")
        self.name = name
        self.text = text


def read_query(query: str, readers: Mapping[str, Callable[[str], object]]) -> dict[str, object]:
    """A URL's ``query`` options, each read by its reader in ``readers``.

    ``ValueError`` for an unknown or repeated option, :class:`BadOption` for
    a value its reader refused.
    """
    options: dict[str, object] = {}
    for name, text in parse_qsl(query, keep_blank_values=True):
        read = readers.get(name)
        if read is None:
            known = ", ".join(readers) or "none"
            raise ValueError(f"unknown option {name!r} (known: {known})")
        if name in options:
            raise ValueError(f"option {name!r} given twice")
        try:
            options[name] = read(text)
        except ValueError:
            raise BadOption(name, text) from None
    return options
