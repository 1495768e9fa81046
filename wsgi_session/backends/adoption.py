"""Adoption: an old system's session becomes ours, under a new id, at most once.

When a request's cookie names no session of ours, the server-side backend
asks the configured :class:`~wsgi_session.migrate.base.Source` for a
:class:`~wsgi_session.migrate.base.Claim`. A claim is written as a new
session under a new random id (never the old id), and the old cookie leaves
a *mark* in our store, as a regenerate leaves a forward: its key is a hash of
the old session's identity (its old id, or the canonical old cookie where the
cookie is the session), it lives as long as the old cookie could, and it
holds when the adoption happened and the new id, sealed with a pad only that
identity and our secret give (HMAC-SHA256), so the store alone learns no
usable id.

Writing the mark create-only is what makes adoption happen at most once: of
a page's parallel requests carrying one old cookie, one writes it; the
others find it, and within ``grace`` seconds of the adoption reach the
adopted session and get its cookie. After the grace window the old cookie
opens nothing, even when the new session is gone (a logout here is never
undone by a late adoption). Then the old session is retired in the old
system unless ``keep_old`` (a rollback stays possible).

Nothing here runs for a request whose cookie names a session of ours.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from wsgi_session.cookies import CookiePolicy, KeyRing, decode_canonical, encode_canonical
from wsgi_session.errors import ConfigurationError, check_seconds
from wsgi_session.migrate.base import MARK, Claim, OldCookie, Source, unreadable
from wsgi_session.record import Record
from wsgi_session.serialization import EMPTY
from wsgi_session.session import ID_BYTES, Origin, Session

if TYPE_CHECKING:
    from wsgi_session.backends.server import ServerSideBackend

log = logging.getLogger("wsgi_session")

DEFAULT_GRACE = 30
_PURPOSE = "wsgi_session.adopted"
LOG_EVERY = 60  # seconds between two lines counting adoptions


def mark_key(identity: str) -> str:
    """Where the mark of an adopted old session lives: a hash, never a session's key.

    ``identity``: what the source named it by (:meth:`Source.identify`).
    """
    value = identity.encode("utf-8", "surrogateescape")
    return hashlib.sha256(_PURPOSE.encode("ascii") + b"\n" + value).hexdigest()


@dataclass
class AdoptedOrigin(Origin):
    """A session adopted (or reached within the grace window) by this request.

    ``replaces``: the old system's cookie, which the response expires where it
    is not ours by name and path. A subclass, not a field of every origin: an
    ordinary load builds its origin exactly as before.
    """

    replaces: OldCookie | None = None


class AdoptionLog:
    """Counts adoptions and logs the count at most once every :data:`LOG_EVERY` seconds."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.total = 0
        self._unlogged = 0
        self._logged_at: float | None = None
        self._lock = threading.Lock()

    def adopted(self, now: float) -> None:
        with self._lock:
            self.total += 1
            self._unlogged += 1
            if self._logged_at is not None and now - self._logged_at < LOG_EVERY:
                return
            count, self._unlogged, self._logged_at = self._unlogged, 0, now
        log.info(
            "adopted %d session(s) from %s since the last count (%d in all by this process)",
            count,
            self.description,
            self.total,
        )


class Adoption:
    """The backend's way to turn an old cookie into a session of ours (see the module)."""

    def __init__(
        self,
        source: Source,
        keys: KeyRing,
        *,
        grace: int = DEFAULT_GRACE,
        keep_old: bool = False,
    ) -> None:
        check_seconds("migrate_grace", grace, minimum=0)
        if not isinstance(source, Source):
            raise ConfigurationError(
                "{migrate_from} must be a migration source URL or a Source, not {kind}",
                "migrate_from",
                kind=type(source).__name__,
            )
        self.source = source
        self.grace = grace
        self.keep_old = bool(keep_old)
        self._pad_key = keys.derive(_PURPOSE)[-1]  # the current secret's
        self.log = AdoptionLog(source.description)

    def reading_old_cookie(self, policy: CookiePolicy) -> CookiePolicy:
        """``policy``, reading the old cookie too where it has another name than ours."""
        old = self.source.cookie
        if old is None or old.name == policy.name:
            return policy
        return replace(policy, old_name=old.name)

    def open(self, backend: ServerSideBackend, cookie: str, now: float, fresh: Origin) -> Origin:
        """The session ``cookie`` (not one of ours) opens: adopted, followed, or ``fresh``."""
        source = self.source
        identity = source.identify(cookie)
        if identity is None:
            return fresh  # forged, expired, not of the old system's format: no lookup
        claim = source.claim(cookie)
        key = mark_key(identity)
        mark = backend.store.load(key)
        if mark is not None:
            return self._follow(backend, identity, mark[0], now, fresh)
        if claim is None:
            return fresh
        session = Session(lambda: Origin.fresh(now))  # a new session, under a new id
        session.update(claim.data)
        session.permanent = claim.permanent
        try:
            text = session.serialize()
        except (TypeError, ValueError) as exc:
            unreadable(source.description, f"its data cannot be kept as tagged JSON: {exc}")
            return fresh
        if text == EMPTY:
            return fresh  # nothing to carry over: no session, no mark
        new_id = session.id
        # Through the backend's own write of a new session: sealed if records are,
        # its owner indexed.
        record = self._lifetime_left(backend.record(session, text, now, True), claim, backend)
        backend.write_new(new_id, session, record)
        ttl = self._mark_ttl(backend, claim)
        if not backend.store.save(key, self._mark(identity, new_id, now), ttl, None):
            # A concurrent request with the same old cookie adopted it first: ours goes.
            backend.remove(new_id, None)
            mark = backend.store.load(key)
            return fresh if mark is None else self._follow(backend, identity, mark[0], now, fresh)
        if not self.keep_old:
            source.retire(claim)
        self.log.adopted(now)
        origin = self._opened(backend, new_id, fresh, claim.cookie)
        # Not a refresh due now: the record keeps the old session's remaining life,
        # which the next request slides on as ours would.
        origin.accessed = now
        return origin

    @staticmethod
    def _lifetime_left(record: Record, claim: Claim, backend: ServerSideBackend) -> Record:
        """``record`` with what is left of the old session's life and its start.

        An old session with less time left than ours would give ends when it
        would have, unless the user comes back first (then ours slides on).
        """
        accessed = record.accessed
        if claim.remaining is not None:
            accessed -= max(0.0, backend.lifetime.idle_timeout - claim.remaining)
        created = accessed if claim.created is None else min(claim.created, accessed)
        return record._replace(created=math.floor(created), accessed=math.floor(accessed))

    def _mark_ttl(self, backend: ServerSideBackend, claim: Claim) -> int:
        """As long as the old cookie could still be replayed, and never less than the grace."""
        left = claim.remaining
        if left is None:
            left = backend.lifetime.absolute_timeout or backend.lifetime.idle_timeout
        return max(1, math.ceil(max(left, self.grace)))

    def _pad(self, identity: str) -> bytes:
        value = identity.encode("utf-8", "surrogateescape")
        return hmac.new(self._pad_key, value, hashlib.sha256).digest()[:ID_BYTES]

    def _mark(self, identity: str, new_id: str, now: float) -> bytes:
        raw = decode_canonical(new_id)
        assert raw is not None and len(raw) == ID_BYTES  # new_session_id() made it
        sealed = bytes(a ^ b for a, b in zip(raw, self._pad(identity), strict=True))
        return b"%s %d %s" % (MARK, math.floor(now), sealed.hex().encode("ascii"))

    def _follow(
        self, backend: ServerSideBackend, identity: str, mark: bytes, now: float, fresh: Origin
    ) -> Origin:
        """The adopted session, for a request within the grace window; else ``fresh``."""
        parts = mark.split(b" ")
        if len(parts) != 3 or parts[0] != MARK:
            return fresh
        try:
            adopted_at = int(parts[1])
            sealed = bytes.fromhex(parts[2].decode("ascii"))
        except ValueError:
            return fresh
        if now - adopted_at >= self.grace or len(sealed) != ID_BYTES:
            return fresh  # adopted long ago: the old cookie opens nothing any more
        raw = bytes(a ^ b for a, b in zip(sealed, self._pad(identity), strict=True))
        return self._opened(backend, encode_canonical(raw), fresh, self.source.cookie)

    @staticmethod
    def _opened(
        backend: ServerSideBackend, session_id: str, fresh: Origin, old: OldCookie | None
    ) -> Origin | AdoptedOrigin:
        """``session_id``'s session as a load finds it; its cookie goes out, ``old`` expires."""
        loaded = backend.open(backend.signer.sign(session_id), adopt=False)
        if loaded.new:
            return fresh  # ended meanwhile (a logout, a revocation): it stays ended
        origin = AdoptedOrigin(
            **{field.name: getattr(loaded, field.name) for field in fields(loaded)},
            replaces=old,
        )
        origin.resign = True  # the client holds the old cookie: ours must go out
        return origin
