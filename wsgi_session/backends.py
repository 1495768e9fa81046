"""Backends turn a cookie into a session and a session back into a cookie.

The middleware talks to a :class:`Backend` only. :class:`ServerSideBackend`
keeps the data in a :class:`~wsgi_session.stores.base.Store` and puts a signed
id in the cookie; the cookie store (``stores/cookie.py``) supplies a backend
that puts the whole session in the cookie.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from wsgi_session.cookies import CookieSigner, KeyRing
from wsgi_session.errors import StoreWriteFailed
from wsgi_session.lifetime import Lifetime
from wsgi_session.serialization import dumps, loads
from wsgi_session.session import Origin, Session
from wsgi_session.stores.base import Store, Version

log = logging.getLogger("wsgi_session")


@dataclass(frozen=True)
class CookieUpdate:
    """What the response must do with the cookie: set ``value``, or expire it (``None``).

    ``check``, if given, is called with the complete Set-Cookie header before it
    is sent and may raise (the cookie store's size guard needs the attributes).
    """

    value: str | None
    max_age: int | None = None
    check: Callable[[str], None] | None = None


EXPIRE = CookieUpdate(None)


class Backend(Protocol):
    """Loads a session from its cookie; persists it and says what cookie to send."""

    def open(self, cookie: str | None) -> Origin:
        """Load what ``cookie`` names. A bad cookie yields a fresh origin, never an error."""
        ...

    def commit(self, session: Session) -> CookieUpdate | None:
        """Persist ``session``; ``None`` means the response needs no Set-Cookie."""
        ...


@runtime_checkable
class BackendFactory(Protocol):
    """A store that brings its own backend (the cookie store does)."""

    def make_backend(self, keys: KeyRing, lifetime: Lifetime) -> Backend: ...


class BaseBackend:
    """What every backend shares: timeouts and the permanent cookie's Max-Age."""

    def __init__(self, lifetime: Lifetime) -> None:
        self.lifetime = lifetime
        self.clock = lifetime.clock

    def commit(self, session: Session) -> CookieUpdate | None:
        """Persist ``session``; ``None`` means the response needs no Set-Cookie."""
        now = self.clock()
        if self.nothing_to_commit(session, now):
            return None
        return self.persist(session, session.serialize(), now)

    def persist(self, session: Session, text: str, now: float) -> CookieUpdate | None:
        """Keep ``session``, whose data serializes to ``text``; what cookie to send."""
        raise NotImplementedError

    def nothing_to_commit(self, session: Session, now: float) -> bool:
        """Whether ``session`` needs neither a write nor a cookie: the common read.

        Decided without serializing the data whenever it holds only plain values.
        """
        origin = session.origin
        return (
            not origin.new
            and origin.text != EMPTY
            and session.unchanged()
            and not self.lifetime.needs_refresh(origin.accessed, now, origin.idle_timeout)
            and not self.resend(session)
        )

    def resend(self, session: Session) -> bool:
        """Whether an unchanged session's cookie must be sent again anyway."""
        return session.origin.resign or (session.permanent and self.lifetime.refresh_each_request)

    def cookie(
        self,
        value: str,
        session: Session,
        created: float,
        now: float,
        check: Callable[[str], None] | None = None,
    ) -> CookieUpdate:
        if not session.permanent:
            return CookieUpdate(value, None, check)
        max_age = self.lifetime.whole_seconds(created, now, session.idle_timeout)
        return CookieUpdate(value, max_age, check)


_SIGNED_ID = re.compile(r"[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{20,100}")
_FORMAT = b"1"
_FORWARD = b"F"
EMPTY = "{}"
FORWARD_TTL = 300
# A save conflicts only when another request's save landed first, so a request
# retries at most once per request racing it; the bound only stops a store that
# misbehaves from looping forever. 10 was too low: 22 gunicorn workers writing one
# session at once on memcached made a request conflict 10 times and answer 503.
MAX_ATTEMPTS = 100


class Record(NamedTuple):
    """A stored session: format version, timestamps, flags, then the data.

    A named tuple, not a frozen dataclass: one is built on every load and
    every save, and a tuple is made in a third of the time.
    """

    created: float
    accessed: float
    permanent: bool
    idle_timeout: int | None
    text: str
    forward: str | None = None  # set on a retired (regenerated) record: the new record's key

    def encode(self) -> bytes:
        head = b"%s %d %d %d %d " % (
            _FORMAT,
            self.created,
            self.accessed,
            self.permanent,
            self.idle_timeout or 0,
        )
        return head + self.text.encode("utf-8")

    @staticmethod
    def forwarding(key: str) -> bytes:
        return b"%s %s %s" % (_FORMAT, _FORWARD, key.encode("ascii"))

    @classmethod
    def decode(cls, raw: bytes) -> Record | None:
        """The record in ``raw``, or ``None`` if it is not one this version wrote."""
        try:
            fmt, first, rest = raw.split(b" ", 2)
            if fmt != _FORMAT:
                return None
            if first == _FORWARD:
                return cls(0, 0, False, None, EMPTY, forward=rest.decode("ascii"))
            accessed, permanent, idle, text = rest.split(b" ", 3)
            return cls(
                int(first), int(accessed), permanent == b"1", int(idle) or None, text.decode()
            )
        except (ValueError, UnicodeDecodeError):
            return None


class ConflictStats:
    """Counts of concurrent-write events, for monitoring and tests; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.conflicts = 0  # saves refused because another request wrote first
        self.merges = 0  # times a request's changes were re-applied onto a newer record
        self.dropped = 0  # saves dropped because the session was destroyed meanwhile

    def count(self, event: Literal["conflicts", "merges", "dropped"]) -> None:
        with self._lock:
            setattr(self, event, getattr(self, event) + 1)

    def as_dict(self) -> dict[str, int]:
        return {"conflicts": self.conflicts, "merges": self.merges, "dropped": self.dropped}


class ServerSideBackend(BaseBackend):
    """Session data in a store, a signed random id in the cookie.

    The store key is a SHA-256 of the id, so whoever reads the store cannot
    use what they find there as a cookie. Saves are compare-and-set: when a
    concurrent request wrote first, this request's own changes are re-applied
    to the newer record instead of overwriting it.
    """

    def __init__(self, store: Store, keys: KeyRing, lifetime: Lifetime) -> None:
        super().__init__(lifetime)
        self.store = store
        self.signer: CookieSigner = keys.signer("wsgi_session.id")
        self.stats = ConflictStats()

    @staticmethod
    def store_key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode("ascii")).hexdigest()

    def open(self, cookie: str | None) -> Origin:
        now = self.clock()
        if cookie is None:
            return Origin.fresh(now, had_cookie=False)
        if not _SIGNED_ID.fullmatch(cookie):
            return Origin.fresh(now, had_cookie=True)
        verified = self.signer.unsign(cookie)
        if verified is None:
            return Origin.fresh(now, had_cookie=True)
        session_id, current_key = verified
        found = self.store.load(self.store_key(session_id))
        record = Record.decode(found[0]) if found else None
        if (
            found is None
            or record is None
            or record.forward is not None
            or record.text == EMPTY
            or self.lifetime.remaining(record.created, record.accessed, record.idle_timeout, now)
            <= 0
        ):
            return Origin.fresh(now, had_cookie=True)
        try:
            data = loads(record.text)
        except ValueError:
            log.warning("unreadable session record dropped")
            return Origin.fresh(now, had_cookie=True)
        return Origin(
            id=session_id,
            new=False,
            data=data,
            text=record.text,
            created=record.created,
            accessed=record.accessed,
            permanent=record.permanent,
            idle_timeout=record.idle_timeout,
            version=found[1],
            had_cookie=True,
            resign=not current_key,
        )

    def persist(self, session: Session, text: str, now: float) -> CookieUpdate | None:
        origin = session.origin
        old_key = None if origin.new else self.store_key(origin.id)
        moved = session.id != origin.id
        if text == EMPTY and (old_key is None or moved):
            if old_key is not None:
                self.store.delete(old_key)  # destroyed, or regenerated and emptied: ours alone
            return EXPIRE if origin.had_cookie else None
        created = session.created_at(now)
        record = Record(created, now, session.permanent, session.idle_timeout, text)
        if moved:
            return self._move(session, record, old_key, origin.version)
        if old_key is None:
            self._create(self.store_key(session.id), record)
            return self.cookie(self.signer.sign(session.id), session, created, now)
        if not session.differs_from_origin(text):
            if self.lifetime.needs_refresh(origin.accessed, now, session.idle_timeout):
                if not self._write(old_key, record, origin.version):
                    # Whoever wrote first refreshed the record too, and may have
                    # retired this id: its cookie must not be sent again.
                    return None
                if not (session.permanent or self.resend(session)):
                    return None  # a browser-session cookie has no expiry to push back
            elif not self.resend(session):
                return None
            return self.cookie(self.signer.sign(session.id), session, created, now)
        # An emptied session is saved empty (loads treat that as no session), not
        # deleted: a delete cannot compare-and-set, and would lose the keys a
        # concurrent request set meanwhile.
        saved = self._save(old_key, record, origin.version, session)
        if saved is None:
            return EXPIRE
        saved_key, saved_record = saved
        if saved_key != old_key:
            return None  # a concurrent login moved the session; its response sends the new id
        if saved_record.text == EMPTY:
            return EXPIRE
        # A session that stopped being permanent needs its cookie again, without
        # Max-Age, or the browser keeps the old expiry.
        if origin.resign or session.permanent or origin.permanent:
            return self.cookie(self.signer.sign(session.id), session, created, now)
        return None

    def _write(self, key: str, record: Record, version: Version | None) -> bool:
        """Compare-and-set ``record``, kept by the store for as long as it can live."""
        ttl = self.lifetime.whole_seconds(record.created, record.accessed, record.idle_timeout)
        return self.store.save(key, record.encode(), ttl, version)

    def _create(self, key: str, record: Record) -> None:
        if self._write(key, record, None):
            return
        # A fresh 256-bit id cannot collide; "exists" means a client retry (after
        # a dropped connection) repeated a create that had landed. Ours? Fine.
        found = self.store.load(key)
        if found is None or found[0] != record.encode():
            raise StoreWriteFailed("a new session id collided with a stored one")

    def _move(
        self,
        session: Session,
        record: Record,
        old_key: str | None,
        old_version: Version | None,
    ) -> CookieUpdate:
        """Store the session under its new id and retire the old record."""
        new_key = self.store_key(session.id)
        self._create(new_key, record)
        if old_key is not None:
            if session.destroyed:
                self.store.delete(old_key)
            else:
                self._retire(old_key, old_version, new_key, session)
        return self.cookie(self.signer.sign(session.id), session, record.created, record.accessed)

    def _retire(
        self, old_key: str, version: Version | None, new_key: str, session: Session
    ) -> None:
        """Replace a regenerated session's old record by a pointer to the new one.

        Loads never follow the pointer (the old id must stop working), but a
        concurrent request that loaded the old record does, so what it writes
        lands in the new record instead of being lost.
        """
        for _ in range(MAX_ATTEMPTS):
            if self.store.save(old_key, Record.forwarding(new_key), FORWARD_TTL, version):
                return
            self.stats.count("conflicts")
            found = self.store.load(old_key)
            theirs = Record.decode(found[0]) if found else None
            if found is None or theirs is None or theirs.forward is not None:
                return
            # Another request wrote the old record after we loaded it: carry its changes over.
            merged = self._merged(theirs, session)
            current = self.store.load(new_key)
            if current is not None:
                self._save(new_key, merged, current[1], session)
            version = found[1]
        raise StoreWriteFailed(f"could not retire the old session record in {MAX_ATTEMPTS} tries")

    def _save(
        self, key: str, record: Record, version: Version | None, session: Session
    ) -> tuple[str, Record] | None:
        """Compare-and-set ``record``, merging into newer records.

        Returns the key and record saved (a regenerated session's new key if a
        concurrent request moved it), or ``None`` if the session was destroyed.
        """
        for _ in range(MAX_ATTEMPTS):
            if self._write(key, record, version):
                return key, record
            self.stats.count("conflicts")
            found = self._follow(key)
            if found is None:
                self.stats.count("dropped")
                log.warning(
                    "session was destroyed by a concurrent request (or lost with the store "
                    "server that held it); this request's changes are dropped and its "
                    "cookie expired"
                )
                return None
            key, theirs, version = found
            record = self._merged(theirs, session)
            self.stats.count("merges")
        raise StoreWriteFailed(f"session save kept conflicting after {MAX_ATTEMPTS} tries")

    def _follow(self, key: str) -> tuple[str, Record, Version] | None:
        """The live record at ``key``, following forwards left by regenerations."""
        for _ in range(MAX_ATTEMPTS):
            found = self.store.load(key)
            theirs = Record.decode(found[0]) if found else None
            if found is None or theirs is None:
                return None
            if theirs.forward is None:
                return key, theirs, found[1]
            key = theirs.forward
        return None

    def _merged(self, theirs: Record, session: Session) -> Record:
        """``theirs`` with this request's own changes applied on top."""
        changed, deleted = session.changes()
        data: dict[str, Any] = loads(theirs.text)
        data.update(changed)
        for key in deleted:
            data.pop(key, None)
        # Flags too: this request's only where it changed them (a remember-me
        # login in a concurrent request must not be undone by a slow cart update).
        origin = session.origin
        permanent = session.permanent
        if permanent == origin.permanent:
            permanent = theirs.permanent
        idle_timeout = session.idle_timeout
        if idle_timeout == origin.idle_timeout:
            idle_timeout = theirs.idle_timeout
        return Record(theirs.created, self.clock(), permanent, idle_timeout, dumps(data))
