"""One codec for a session at rest: the store's records and the cookie store's payloads.

A record, format 1, as a store keeps it::

    b"1 <created> <accessed> <permanent 0|1> <idle timeout or 0> <tagged JSON>"
    b"1 F <key>"        a regenerated session's old record: where the new one is

A sealed record (``seal_records=True``, :mod:`wsgi_session.sealing`) keeps the
same header under its own format, and the data sealed::

    b"1s <created> <accessed> <permanent 0|1> <idle timeout or 0> " + nonce + AES-GCM(JSON)
    b"1s F " + nonce + AES-GCM(the new session id)

The associated data of the seal is the store key and the header bytes as
written (everything before the nonce), so every header field is covered,
whichever fields a later version adds. A sealed forward carries the new *id*,
not its key: a racing request that holds the old id opens it, derives the new
record's key and opens that record; the store learns nothing.

The cookie store's payload is the same fields without the format version (the
cookie carries its own) and with the session id before the data::

    b"<created> <accessed> <permanent 0|1> <idle timeout or 0> <id> <tagged JSON>"

Timestamps are whole POSIX seconds.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from wsgi_session.serialization import EMPTY, loads
from wsgi_session.session import Origin, Session

FORMAT = b"1"
SEALED = b"1s"
FORWARD = b"F"
_FORWARD_HEAD = FORWARD + b" "
# A record's fields after the format: the header's, then the data, which is last
# (sealed or not) and the only one that may hold a space.
_FIELDS = 5


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

    @property
    def retired(self) -> bool:
        """A regenerated session's old record: a forward, not a session."""
        return self.forward is not None or self.forward_id is not None

    @classmethod
    def of(cls, session: Session, text: str, now: float) -> Record:
        """What to keep of ``session``, whose data serializes to ``text``, used ``now``."""
        return cls(session.created_at(now), now, session.permanent, session.idle_timeout, text)

    def origin(
        self, session_id: str, *, version: object = None, resign: bool, found_at: object = None
    ) -> Origin:
        """The session as loaded by a request; ``ValueError`` if its data is unreadable."""
        return Origin(
            id=session_id,
            new=False,
            data=loads(self.text),
            text=self.text,
            created=self.created,
            accessed=self.accessed,
            permanent=self.permanent,
            idle_timeout=self.idle_timeout,
            version=version,
            had_cookie=True,
            resign=resign,
            found_at=found_at,
        )

    def _head(self) -> bytes:
        return b"%d %d %d %d " % (
            self.created,
            self.accessed,
            self.permanent,
            self.idle_timeout or 0,
        )

    def encode(self, lock: Lock | None = None) -> bytes:
        """The record as a store keeps it: sealed with ``lock`` if given."""
        if lock is None:
            return FORMAT + b" " + self._head() + self.text.encode("utf-8")
        header = SEALED + b" " + self._head()
        return header + lock.seal(self.text.encode("utf-8"), header)

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
        return raw[: len(SEALED) + 1] == SEALED + b" "

    @classmethod
    def decode(cls, raw: bytes, lock: Lock | None = None) -> Record | None:
        """The record in ``raw``, or ``None`` if it is not one this version wrote.

        A sealed record needs ``lock``: without it, or if it does not open,
        ``None`` too.
        """
        fmt, _, body = raw.partition(b" ")
        if fmt == SEALED:
            return None if lock is None else cls._unseal(raw, body, lock)
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
    def _unseal(cls, raw: bytes, body: bytes, lock: Lock) -> Record | None:
        if body[:2] == _FORWARD_HEAD:
            sealed = body[2:]
            forward_id = lock.open(sealed, raw[: len(raw) - len(sealed)])
            if forward_id is None or not forward_id.isascii():
                return None
            return cls(0, 0, False, None, EMPTY, forward_id=forward_id.decode("ascii"))
        fields = body.split(b" ", _FIELDS - 1)
        # The header is every byte before the sealed data, exactly as stored.
        data = lock.open(fields[-1], raw[: len(raw) - len(fields[-1])])
        if data is None:
            return None
        fields[-1] = data
        return cls._parse(fields, _FIELDS)

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
    def _parse(cls, fields: list[bytes], count: int) -> Record | None:
        """The record in ``fields`` (timestamps and flags first, the data last)."""
        if len(fields) != count:
            return None
        try:
            return cls(
                int(fields[0]),
                int(fields[1]),
                fields[2] == b"1",
                int(fields[3]) or None,
                fields[-1].decode("utf-8"),
            )
        except ValueError:  # a UnicodeDecodeError too
            return None
