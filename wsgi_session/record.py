"""One codec for a session at rest: the store's records and the cookie store's payloads.

A record, format 1, as a store keeps it::

    b"1 <created> <accessed> <permanent 0|1> <idle timeout or 0> <tagged JSON>"
    b"1 F <key>"        a regenerated session's old record: where the new one is
    b"1 E"              a destroyed session's record, for the moment before its deletion
                        (see RecordWriter.end): no session, and nothing to follow

A session with an owner (see :mod:`wsgi_session.owner`) is written in format 2,
whose header also holds what listing a user's sessions needs, so that listing
never reads the data::

    b"2 <created> <accessed> <permanent> <idle> <owner hash> <indexed until> <client or -> <JSON>"

Sessions without an owner are still written in format 1, and both are read.

A sealed record (``seal_records=True``, :mod:`wsgi_session.sealing`) keeps the
header of its format, marked ``s``, and the data sealed::

    b"1s <created> <accessed> <permanent> <idle> " + nonce + AES-GCM(JSON)
    b"2s <created> <accessed> <permanent> <idle> <owner hash> <indexed until> <client or -> "
        + nonce + AES-GCM(JSON)
    b"1s F " + nonce + AES-GCM(the new session id)

So the digit says which header fields there are, the ``s`` that the data is
sealed. The associated data of the seal is the store key and the header bytes
as written (everything before the nonce), so every header field is covered,
the owner's too, whichever fields a later version adds. A sealed forward
carries the new *id*, not its key: a racing request that holds the old id
opens it, derives the new record's key and opens that record; the store
learns nothing. In a sealed deployment the client field is itself sealed,
under a key of the owner's hash (see :mod:`wsgi_session.backends.owners`),
so that listing, which holds no session id, can show it and a dump cannot.

The cookie store's payload is the same fields without the format version (the
cookie carries its own) and with the session id before the data::

    b"<created> <accessed> <permanent 0|1> <idle timeout or 0> <id> <tagged JSON>"

Timestamps are whole POSIX seconds.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from wsgi_session.crypto import NONCE_BYTES
from wsgi_session.owner import Owner
from wsgi_session.serialization import EMPTY, loads
from wsgi_session.session import Origin, Session

FORMAT = b"1"
OWNED_FORMAT = b"2"
SEALED = b"1s"
SEALED_OWNED = b"2s"
_NO_CLIENT = b"-"
FORWARD = b"F"
# What a logout writes, by compare-and-set, over the record it loaded, just before
# deleting it: a login retiring that record meanwhile finds it ended, not changed.
ENDED = b"1 E"
_FORWARD_HEAD = FORWARD + b" "
_PLAIN_FORMAT = FORMAT + b" "
# A record's fields after the format: the header's, then the data, which is last
# (sealed or not) and the only one that may hold a space.
_FIELDS = 5
_OWNED_FIELDS = 8
# The data a reader without the session id sees of a sealed record (see Record.header).
UNOPENED = ""
# AES-GCM adds a nonce and a tag: an empty session's sealed data has this length.
_SEALED_EMPTY = NONCE_BYTES + 16 + len(EMPTY)
_new_tuple = tuple.__new__


class Lock(Protocol):
    """Seals one session's data (:class:`wsgi_session.sealing.RecordLock`)."""

    def seal(self, data: bytes, header: bytes) -> bytes: ...

    def open(self, sealed: bytes, header: bytes) -> bytes | None:
        """The data, or ``None`` if ``sealed`` is not ``data`` sealed with ``header``."""
        ...


class Record(NamedTuple):
    """A stored session: timestamps, flags, then the data.

    A named tuple, not a frozen dataclass: one is built on every load and
    every save, and a tuple is made in a third of the time.
    """

    created: float
    accessed: float
    permanent: bool
    idle_timeout: int | None
    text: str
    forward: str | None = None  # set on a retired (regenerated) record: the new record's key
    forward_id: str | None = None  # ...or, in a sealed one, the new session's id
    owner: Owner | None = None

    @property
    def retired(self) -> bool:
        """A regenerated session's old record: a forward, not a session."""
        return self.forward is not None or self.forward_id is not None

    @classmethod
    def of(cls, session: Session, text: str, now: float, owner: Owner | None = None) -> Record:
        """What to keep of ``session``, whose data serializes to ``text``, used ``now``."""
        # tuple.__new__ in the fields' order, as _parse does (the named tuple's own
        # __new__ is one more Python frame on every write): no forward.
        return _new_tuple(
            cls,
            (
                session.created_at(now),
                now,
                session.permanent,
                session.idle_timeout,
                text,
                None,
                None,
                owner,
            ),
        )

    def origin(
        self,
        session_id: str,
        *,
        version: object = None,
        resign: bool,
        found_at: object = None,
        cookie: str | None = None,
    ) -> Origin:
        """The session as loaded by a request; ``ValueError`` if its data is unreadable."""
        text = self.text
        # Positionally, in Origin's field order (16 keywords matched by name on every load):
        # id, new, data, text, created, accessed, permanent, idle_timeout, version,
        # stale_cookie, resign, degraded, found_at, owner, client, cookie.
        return Origin(
            session_id,
            False,
            loads(text),
            text,
            self.created,
            self.accessed,
            self.permanent,
            self.idle_timeout,
            version,
            False,
            resign,
            False,
            found_at,
            self.owner,
            None,
            cookie,
        )

    def _head(self) -> bytes:
        return b"%d %d %d %d " % (
            self.created,
            self.accessed,
            self.permanent,
            self.idle_timeout or 0,
        )

    def _header(self, sealed: bool) -> bytes:
        """Every byte before the data: the format, the timestamps and flags, the owner."""
        owner = self.owner
        if owner is None:
            return (SEALED if sealed else FORMAT) + b" " + self._head()
        return b"%s %s%s %d %s " % (
            SEALED_OWNED if sealed else OWNED_FORMAT,
            self._head(),
            owner.digest.encode("ascii"),
            owner.indexed_until,
            owner.client.encode("ascii") or _NO_CLIENT,
        )

    def encode(self, lock: Lock | None = None) -> bytes:
        """The record as a store keeps it: sealed with ``lock`` if given."""
        data = self.text.encode("utf-8")
        if lock is None and self.owner is None:
            return _PLAIN_FORMAT + self._head() + data  # most writes: _header()'s frame spared
        if lock is None:
            return self._header(False) + data
        header = self._header(True)
        return header + lock.seal(data, header)

    def encode_with_id(self, session_id: str) -> bytes:
        """The record as the cookie store's payload, which carries the id too."""
        return self._head() + session_id.encode("utf-8") + b" " + self.text.encode("utf-8")

    @staticmethod
    def forwarding(key: str) -> bytes:
        """A retired record pointing to ``key``, the regenerated session's new record."""
        return b"%s %s %s" % (FORMAT, FORWARD, key.encode("ascii"))

    @staticmethod
    def sealed_forwarding(session_id: str, lock: Lock) -> bytes:
        """A retired record naming ``session_id`` (the new one), sealed with the old id's lock."""
        header = SEALED + b" " + _FORWARD_HEAD
        return header + lock.seal(session_id.encode("ascii"), header)

    @staticmethod
    def is_sealed(raw: bytes) -> bool:
        fmt = raw[:3]
        return fmt == SEALED + b" " or fmt == SEALED_OWNED + b" "

    @classmethod
    def decode(cls, raw: bytes, lock: Lock | None = None) -> Record | None:
        """The record in ``raw``, or ``None`` if it is not one this version wrote.

        A sealed record needs ``lock``: without it, or if it does not open,
        ``None`` too.
        """
        if raw[:2] == _PLAIN_FORMAT and raw[2:4] != _FORWARD_HEAD:
            # Nearly every load: a format 1 session, split once with its format
            # (what the partition and the split below give it, without the body's copy).
            return cls._parse(raw.split(b" ", _FIELDS)[1:], _FIELDS)
        fmt, _, body = raw.partition(b" ")
        if fmt in (SEALED, SEALED_OWNED):
            return None if lock is None else cls._unseal(raw, fmt, body, lock)
        if fmt == OWNED_FORMAT:
            return cls._parse(body.split(b" ", _OWNED_FIELDS - 1), _OWNED_FIELDS, owned=True)
        if fmt != FORMAT:
            return None
        if body[:2] == _FORWARD_HEAD:
            try:
                key = body[2:].decode("ascii")
            except UnicodeDecodeError:
                return None
            return cls(0, 0, False, None, EMPTY, forward=key)
        return cls._parse(body.split(b" ", _FIELDS - 1), _FIELDS)

    @classmethod
    def header(cls, raw: bytes) -> Record | None:
        """What a reader without the session id learns of ``raw`` (listing, revocation).

        A plain record whole; of a sealed one its header, the data left sealed:
        ``text`` is :data:`EMPTY` if the sealed data is an empty session's (its
        length says so, to the store too), else :data:`UNOPENED`; a sealed
        forward's ``forward_id`` is :data:`UNOPENED`. The header is not
        authenticated here: that needs the id's key.
        """
        fmt, _, body = raw.partition(b" ")
        if fmt not in (SEALED, SEALED_OWNED):
            return cls.decode(raw)
        if fmt == SEALED and body[:2] == _FORWARD_HEAD:
            return cls(0, 0, False, None, EMPTY, forward_id=UNOPENED)
        fields = cls._sealed_fields(fmt, body)
        fields[-1] = EMPTY.encode("ascii") if len(fields[-1]) == _SEALED_EMPTY else b""
        return cls._parse_sealed(fmt, fields)

    @staticmethod
    def _sealed_fields(fmt: bytes, body: bytes) -> list[bytes]:
        return body.split(b" ", (_OWNED_FIELDS if fmt == SEALED_OWNED else _FIELDS) - 1)

    @classmethod
    def _parse_sealed(cls, fmt: bytes, fields: list[bytes]) -> Record | None:
        if fmt == SEALED_OWNED:
            return cls._parse(fields, _OWNED_FIELDS, owned=True)
        return cls._parse(fields, _FIELDS)

    @classmethod
    def _unseal(cls, raw: bytes, fmt: bytes, body: bytes, lock: Lock) -> Record | None:
        if fmt == SEALED and body[:2] == _FORWARD_HEAD:
            sealed = body[2:]
            forward_id = lock.open(sealed, raw[: len(raw) - len(sealed)])
            if forward_id is None or not forward_id.isascii():
                return None
            return cls(0, 0, False, None, EMPTY, forward_id=forward_id.decode("ascii"))
        fields = cls._sealed_fields(fmt, body)
        # The header is every byte before the sealed data, exactly as stored.
        data = lock.open(fields[-1], raw[: len(raw) - len(fields[-1])])
        if data is None:
            return None
        fields[-1] = data
        return cls._parse_sealed(fmt, fields)

    @classmethod
    def decode_with_id(cls, raw: bytes) -> tuple[str, Record] | None:
        """``(session id, record)`` from a cookie store payload, or ``None``."""
        fields = raw.split(b" ", 5)
        record = cls._parse(fields, 6)
        if record is None:
            return None
        try:
            return fields[4].decode("utf-8"), record
        except UnicodeDecodeError:
            return None

    @classmethod
    def _parse(cls, fields: list[bytes], count: int, owned: bool = False) -> Record | None:
        """The record in ``fields`` (timestamps and flags first, the data last).

        ``owned``: format 2, whose owner fields come before the data.
        """
        if len(fields) != count:
            return None
        try:
            owner = None
            if owned:
                client = fields[6]
                owner = Owner(
                    fields[4].decode("ascii"),
                    int(fields[5]),
                    "" if client == _NO_CLIENT else client.decode("ascii"),
                )
            idle = fields[3]
            # tuple.__new__ directly, in the fields' order: the named tuple's own
            # __new__ is one more Python frame (and its defaults) on every load.
            return _new_tuple(
                cls,
                (
                    int(fields[0]),
                    int(fields[1]),
                    fields[2] == b"1",
                    None if idle == b"0" else int(idle) or None,  # "0", the usual: no int()
                    fields[-1].decode("utf-8"),
                    None,
                    None,
                    owner,
                ),
            )
        except ValueError:  # a UnicodeDecodeError too
            return None
