"""Server-side sessions: record in a store, keyed by a hash of the id; signed id in the cookie."""

from __future__ import annotations

import hashlib
import logging
import re

from wsgi_session.backends.base import BaseBackend, CookieUpdate
from wsgi_session.backends.cas import RecordWriter
from wsgi_session.backends.owners import NoSessions, OwnerSessions, OwnerTracking, Sessions
from wsgi_session.cookies import CookieSigner, KeyRing
from wsgi_session.decision import Outcome, Plan, moved
from wsgi_session.lifetime import Lifetime
from wsgi_session.record import Record
from wsgi_session.serialization import EMPTY
from wsgi_session.session import ID_LENGTH, Origin, Session
from wsgi_session.stores.base import OwnerIndex, Store

log = logging.getLogger("wsgi_session")

# The id, a dot, the signature: anything else is refused before any HMAC or store work.
_SIGNED_ID = re.compile(rf"[A-Za-z0-9_-]{{{ID_LENGTH}}}\.[A-Za-z0-9_-]{{20,100}}")
_NO_WRITE = frozenset({"resend", "expire"})


class ServerSideBackend(BaseBackend):
    """Session data in a store, a signed random id in the cookie.

    The store key is a SHA-256 of the id, so whoever reads the store cannot
    use what they find there as a cookie. Saves are compare-and-set: when a
    concurrent request wrote first, this request's own changes are re-applied
    to the newer record instead of overwriting it.

    With ``owner_key`` and a store that is an :class:`OwnerIndex`, each record
    keeps its owner (the value of ``session[owner_key]``, hashed) and
    :attr:`sessions` lists and revokes an owner's sessions.
    """

    def __init__(
        self, store: Store, keys: KeyRing, lifetime: Lifetime, owner_key: str | None = None
    ) -> None:
        super().__init__(lifetime)
        self.store = store
        self.signer: CookieSigner = keys.signer("wsgi_session.id")
        self.writer = RecordWriter(store, lifetime)
        self.stats = self.writer.stats
        self.owners: OwnerTracking | None = None
        self.sessions: Sessions
        if owner_key is None:
            self.sessions = NoSessions(
                "no owner_key is set: the middleware does not know whose sessions are whose"
            )
        elif not isinstance(store, OwnerIndex):
            self.sessions = NoSessions(
                f"{type(store).__name__} keeps no owner index (index_owner, unindex_owner, "
                "owned: the OwnerIndex protocol), so it cannot find a user's sessions"
            )
        else:
            self.owners = OwnerTracking(owner_key, store, keys, lifetime)
            self.sessions = OwnerSessions(store, self.owners, keys, self.store_key)

    @staticmethod
    def store_key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode("ascii")).hexdigest()

    def verify(self, cookie: str) -> tuple[str, bool] | None:
        """``(session id, signed with the current key)``; ``None`` if ``cookie`` is not ours."""
        if not _SIGNED_ID.fullmatch(cookie):
            return None  # refused before any HMAC work
        return self.signer.unsign(cookie)

    def open(self, cookie: str | None) -> Origin:
        now = self.clock()
        verified = None if cookie is None else self.verify(cookie)
        if verified is None:  # never looked up, and left alone: another key may verify it
            return Origin.fresh(now)
        session_id, current_key = verified
        found = self.store.load(self.store_key(session_id))
        record = Record.decode(found[0]) if found is not None else None
        if (
            found is None
            or record is None
            or record.forward is not None  # a regenerated session's old id stops working
            or record.text == EMPTY  # an emptied session is no session
            or self.lifetime.remaining(record.created, record.accessed, record.idle_timeout, now)
            <= 0
        ):
            return Origin.fresh(now, stale_cookie=True)
        try:
            return record.origin(session_id, version=found[1], resign=not current_key)
        except ValueError:
            log.warning("unreadable session record dropped")
            return Origin.fresh(now, stale_cookie=True)

    def execute(self, plan: Plan) -> Outcome:
        action = plan.action
        if action in _NO_WRITE:
            return "written"
        session = plan.session
        origin = session.origin
        owners = self.owners
        if action == "delete":  # destroyed, or regenerated and emptied: ours alone
            old_key = self.store_key(origin.id)
            self.store.delete(old_key)
            if owners is not None:
                owners.forget(session, old_key, old_key, None)
            return "written"
        owner = owners.stamp(session, plan.now, moved(session)) if owners is not None else None
        record = Record.of(session, plan.text, plan.now, owner)
        if action == "create":
            new_key = self.store_key(session.id)
            self.writer.create(new_key, record)
            if owners is not None:
                owners.after_write(session, new_key, new_key, owner)
            return "written"
        old_key = self.store_key(origin.id)
        if action == "move":
            return self._move(session, old_key, record)
        if action == "refresh":
            if not self.writer.write(old_key, record, origin.version):
                # Whoever wrote first refreshed the record too, and may have retired this id.
                return "outrun"
            if owners is not None:
                owners.after_write(session, old_key, old_key, owner)
            return "written"
        saved = self.writer.save(old_key, record, origin.version, session)  # "update"
        if saved is None:
            return "destroyed"
        saved_key, saved_record = saved
        if owners is not None and saved_record.owner == owner:
            owners.after_write(session, old_key, saved_key, owner)
        if saved_key != old_key:
            return "moved"
        if saved_record.text == EMPTY:
            return "emptied"
        return "written" if saved_record is record else "merged"

    def _move(self, session: Session, old_key: str, record: Record) -> Outcome:
        """Store ``record`` under the session's new id and retire (or delete) the old one."""
        new_key = self.store_key(session.id)
        owners = self.owners
        self.writer.create(new_key, record)
        if owners is not None and record.owner is not None:
            # Indexed before the old record is retired: a revocation running now
            # finds one or the other (see OwnerSessions.revoke).
            owners.index.index_owner(record.owner.digest, new_key, record.owner.indexed_until)
        if session.destroyed:
            self.store.delete(old_key)
        elif not self.writer.retire(old_key, session.origin.version, new_key, record, session):
            # The old record was deleted meanwhile (a logout, a revocation): the
            # session it started from is over, and must not live on under a new id.
            self.store.delete(new_key)
            if owners is not None and record.owner is not None:
                owners.index.unindex_owner(record.owner.digest, new_key)
            return "destroyed"
        if owners is not None:
            owners.forget(session, old_key, new_key, record.owner)
        return "written"

    def send(self, plan: Plan) -> CookieUpdate:
        return CookieUpdate(self.signer.sign(plan.session.id), self.max_age(plan))
