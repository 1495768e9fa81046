"""Server-side sessions: record in a store, keyed by a hash of the id; signed id in the cookie."""

from __future__ import annotations

import hashlib
import logging
import re

from wsgi_session.backends.base import BaseBackend, CookieUpdate
from wsgi_session.backends.cas import RecordWriter
from wsgi_session.cookies import CookieSigner, KeyRing
from wsgi_session.decision import Outcome, Plan
from wsgi_session.lifetime import Lifetime
from wsgi_session.record import Record
from wsgi_session.serialization import EMPTY
from wsgi_session.session import ID_LENGTH, Origin
from wsgi_session.stores.base import Store

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
    """

    def __init__(self, store: Store, keys: KeyRing, lifetime: Lifetime) -> None:
        super().__init__(lifetime)
        self.store = store
        self.signer: CookieSigner = keys.signer("wsgi_session.id")
        self.writer = RecordWriter(store, lifetime)
        self.stats = self.writer.stats

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
        if action == "delete":  # destroyed, or regenerated and emptied: ours alone
            self.store.delete(self.store_key(origin.id))
            return "written"
        record = Record.of(session, plan.text, plan.now)
        if action == "create":
            self.writer.create(self.store_key(session.id), record)
            return "written"
        old_key = self.store_key(origin.id)
        if action == "move":
            new_key = self.store_key(session.id)
            self.writer.create(new_key, record)
            if session.destroyed:
                self.store.delete(old_key)
            else:
                self.writer.retire(old_key, origin.version, new_key, session)
            return "written"
        if action == "refresh":
            if self.writer.write(old_key, record, origin.version):
                return "written"
            # Whoever wrote first refreshed the record too, and may have retired this id.
            return "outrun"
        saved = self.writer.save(old_key, record, origin.version, session)  # "update"
        if saved is None:
            return "destroyed"
        saved_key, saved_record = saved
        if saved_key != old_key:
            return "moved"
        if saved_record.text == EMPTY:
            return "emptied"
        return "written" if saved_record is record else "merged"

    def send(self, plan: Plan) -> CookieUpdate:
        return CookieUpdate(self.signer.sign(plan.session.id), self.max_age(plan))
