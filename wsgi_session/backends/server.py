"""Server-side sessions: record in a store, keyed by a hash of the id; signed id in the cookie."""

from __future__ import annotations

import logging
import re

from wsgi_session.backends.base import BaseBackend, CookieUpdate
from wsgi_session.backends.cas import RecordWriter
from wsgi_session.backends.slots import Slot, Slots, store_key
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
    to the newer record instead of overwriting it. ``seal_records``: each
    record's data is encrypted under a key derived from its id
    (:mod:`wsgi_session.sealing`), so the store alone reads none of it.
    """

    def __init__(
        self, store: Store, keys: KeyRing, lifetime: Lifetime, *, seal_records: bool = False
    ) -> None:
        super().__init__(lifetime)
        self.store = store
        self.signer: CookieSigner = keys.signer("wsgi_session.id")
        self.seal_records = seal_records
        self.slots = Slots(keys, seal=seal_records)
        self.writer = RecordWriter(store, lifetime, self.slots)
        self.stats = self.writer.stats

    store_key = staticmethod(store_key)

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
        slot = self.slots.of(session_id)
        found = self.store.load(slot.key)
        if found is None:
            return Origin.fresh(now, had_cookie=True)
        record = slot.decode(found[0])
        if record is None and Record.is_sealed(found[0]):
            log.warning(
                "sealed session record dropped: it did not authenticate "
                "(changed in the store, sealed with a secret no longer configured, "
                "or the 'cryptography' package is missing)"
            )
        if (
            record is None
            or record.retired  # a regenerated session's old id stops working
            or record.text == EMPTY  # an emptied session is no session
            or self.lifetime.remaining(record.created, record.accessed, record.idle_timeout, now)
            <= 0
        ):
            return Origin.fresh(now, had_cookie=True)
        try:
            return record.origin(
                session_id, version=found[1], resign=not current_key, found_at=slot
            )
        except ValueError:
            log.warning("unreadable session record dropped")
            return Origin.fresh(now, had_cookie=True)

    def execute(self, plan: Plan) -> Outcome:
        action = plan.action
        if action in _NO_WRITE:
            return "written"
        session = plan.session
        origin = session.origin
        old = self._slot(origin)
        if action == "delete":  # destroyed, or regenerated and emptied: ours alone
            self.store.delete(old.key)
            return "written"
        record = Record.of(session, plan.text, plan.now)
        if action == "create":
            self.writer.create(self.slots.of(session.id), record)
            return "written"
        if action == "move":
            new = self.slots.of(session.id)
            self.writer.create(new, record)
            if session.destroyed:
                self.store.delete(old.key)
            else:
                self.writer.retire(old, origin.version, new, session)
            return "written"
        if action == "refresh":
            if self.writer.write(old, record, origin.version):
                return "written"
            # Whoever wrote first refreshed the record too, and may have retired this id.
            return "outrun"
        saved = self.writer.save(old, record, origin.version, session)  # "update"
        if saved is None:
            return "destroyed"
        saved_slot, saved_record = saved
        if saved_slot.key != old.key:
            return "moved"
        return "emptied" if saved_record.text == EMPTY else "written"

    def _slot(self, origin: Origin) -> Slot:
        """The loaded record's slot, whose key this request derived already; else a new one."""
        if isinstance(origin.found_at, Slot):
            return origin.found_at
        return self.slots.of(origin.id)

    def send(self, plan: Plan) -> CookieUpdate:
        return CookieUpdate(self.signer.sign(plan.session.id), self.max_age(plan))
