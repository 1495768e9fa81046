"""One codec for a session at rest: the store's records and the cookie store's payloads.

A record, format 1, as a store keeps it::

    b"1 <created> <accessed> <permanent 0|1> <idle timeout or 0> <tagged JSON>"
    b"1 F <key>"        a regenerated session's old record: where the new one is

A session with an owner (see :mod:`wsgi_session.owner`) is written in format 2,
whose header also holds what listing a user's sessions needs, so that listing
never reads the data::

    b"2 <created> <accessed> <permanent> <idle> <owner hash> <indexed until> <client or -> <JSON>"

Sessions without an owner are still written in format 1, and both are read.

The cookie store's payload is the same fields without the format version (the
cookie carries its own) and with the session id before the data::

    b"<created> <accessed> <permanent 0|1> <idle timeout or 0> <id> <tagged JSON>"

Timestamps are whole POSIX seconds.
"""

from __future__ import annotations

from typing import NamedTuple

from wsgi_session.owner import Owner
from wsgi_session.serialization import EMPTY, loads
from wsgi_session.session import Origin, Session

FORMAT = b"1"
OWNED_FORMAT = b"2"
_NO_CLIENT = b"-"
FORWARD = b"F"
_FORWARD_HEAD = FORWARD + b" "


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
    owner: Owner | None = None

    @classmethod
    def of(cls, session: Session, text: str, now: float, owner: Owner | None = None) -> Record:
        """What to keep of ``session``, whose data serializes to ``text``, used ``now``."""
        return cls(
            session.created_at(now), now, session.permanent, session.idle_timeout, text, None, owner
        )

    def origin(self, session_id: str, *, version: object = None, resign: bool) -> Origin:
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
            resign=resign,
            owner=self.owner,
        )

    def _head(self) -> bytes:
        return b"%d %d %d %d " % (
            self.created,
            self.accessed,
            self.permanent,
            self.idle_timeout or 0,
        )

    def encode(self) -> bytes:
        """The record as a store keeps it."""
        owner = self.owner
        if owner is None:
            return FORMAT + b" " + self._head() + self.text.encode("utf-8")
        return b"%s %s%s %d %s %s" % (
            OWNED_FORMAT,
            self._head(),
            owner.digest.encode("ascii"),
            owner.indexed_until,
            owner.client.encode("ascii") or _NO_CLIENT,
            self.text.encode("utf-8"),
        )

    def encode_with_id(self, session_id: str) -> bytes:
        """The record as the cookie store's payload, which carries the id too."""
        return self._head() + session_id.encode("utf-8") + b" " + self.text.encode("utf-8")

    @staticmethod
    def forwarding(key: str) -> bytes:
        """A retired record pointing to ``key``, the regenerated session's new record."""
        return b"%s %s %s" % (FORMAT, FORWARD, key.encode("ascii"))

    @classmethod
    def decode(cls, raw: bytes) -> Record | None:
        """The record in ``raw``, or ``None`` if it is not one this version wrote."""
        fmt, _, body = raw.partition(b" ")
        if fmt == OWNED_FORMAT:
            return cls._parse(body.split(b" ", 7), 8, owned=True)
        if fmt != FORMAT:
            return None
        if body[:2] == _FORWARD_HEAD:
            try:
                key = body[2:].decode("ascii")
            except UnicodeDecodeError:
                return None
            return cls(0, 0, False, None, EMPTY, forward=key)
        return cls._parse(body.split(b" ", 4), 5)

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
            return cls(
                int(fields[0]),
                int(fields[1]),
                fields[2] == b"1",
                int(fields[3]) or None,
                fields[-1].decode("utf-8"),
                None,
                owner,
            )
        except ValueError:  # a UnicodeDecodeError too
            return None
