"""Server-side sessions: record in a store, keyed by a hash of the id; signed id in the cookie."""

from __future__ import annotations

import logging

from wsgi_session.backends.adoption import AdoptedOrigin, Adoption
from wsgi_session.backends.base import BaseBackend, CookieUpdate
from wsgi_session.backends.cas import RecordWriter, Saved, same_digest
from wsgi_session.backends.owners import NoSessions, OwnerSessions, OwnerTracking, Sessions
from wsgi_session.backends.reporting import Reporting, metered
from wsgi_session.backends.slots import Slot, Slots, store_key
from wsgi_session.cookies import CookieSigner, KeyRing
from wsgi_session.decision import Outcome, Plan, moved
from wsgi_session.lifetime import Lifetime
from wsgi_session.metrics.audit import AuditLog
from wsgi_session.metrics.base import NO_METRICS, Metrics, Refusal
from wsgi_session.record import ENDED, Record
from wsgi_session.serialization import EMPTY
from wsgi_session.session import Origin, Session
from wsgi_session.signed_id import SIGNED_ID, is_marked, sign_id, verify_signed_id
from wsgi_session.stores.base import OwnerIndex, Store, Version

log = logging.getLogger("wsgi_session")

_NO_WRITE = frozenset({"resend", "expire"})


class ServerSideBackend(BaseBackend):
    """Session data in a store, a signed random id in the cookie.

    The store key is a SHA-256 of the id, so whoever reads the store cannot
    use what they find there as a cookie. Saves are compare-and-set: when a
    concurrent request wrote first, this request's own changes are re-applied
    to the newer record instead of overwriting it. ``seal_records``: each
    record's data is encrypted under a key derived from its id
    (:mod:`wsgi_session.sealing`), so the store alone reads none of it;
    ``require_sealed`` then refuses the plain records a deployment that
    switched sealing on still reads (see docs/security.md).

    With ``owner_key`` and a store that is an :class:`OwnerIndex`, each record
    keeps its owner (the value of ``session[owner_key]``, hashed) and
    :attr:`sessions` lists and revokes an owner's sessions.
    """

    def __init__(
        self,
        store: Store,
        keys: KeyRing,
        lifetime: Lifetime,
        owner_key: str | None = None,
        *,
        seal_records: bool = False,
        require_sealed: bool = False,
        metrics: Metrics = NO_METRICS,
        audit: AuditLog | None = None,
        adoption: Adoption | None = None,
    ) -> None:
        super().__init__(lifetime)
        kind = type(store).__name__
        self.store = store = metered(store, metrics)
        self.adoption = adoption
        self.signer: CookieSigner = keys.signer("wsgi_session.id")
        self.seal_records = seal_records
        self.slots = Slots(keys, seal=seal_records, require_sealed=require_sealed)
        self.owners: OwnerTracking | None = None
        self.sessions: Sessions
        if owner_key is None:
            self.sessions = NoSessions(
                "no owner_key is set: the middleware does not know whose sessions are whose"
            )
        elif not isinstance(store, OwnerIndex):
            self.sessions = NoSessions(
                f"{kind} keeps no owner index (index_owner, unindex_owner, "
                "owned: the OwnerIndex protocol), so it cannot find a user's sessions"
            )
        else:
            self.owners = OwnerTracking(owner_key, store, keys, lifetime, seal=seal_records)
            self.sessions = OwnerSessions(store, self.owners, keys, self.store_key)
        self.writer = RecordWriter(
            store,
            lifetime,
            self.slots,
            same_digest if self.owners is None else self.owners.same_owner,
        )
        self.stats = self.writer.stats
        if metrics.enabled or audit is not None:
            self.report_to(metrics, audit)

    def report_to(self, metrics: Metrics, audit: AuditLog | None = None) -> Reporting:
        reporting = super().report_to(metrics, audit)
        if isinstance(self.sessions, OwnerSessions):
            self.sessions.metrics = metrics
            self.sessions.audit = audit
        return reporting

    store_key = staticmethod(store_key)

    # Whether a stored record with no data is a session. Not here: an emptied
    # session ends (its cookie is expired). Django's engines keep one (EngineBackend).
    empty_is_session = False

    def verify(self, cookie: str) -> tuple[str, bool] | None:
        """``(session id, signed with the current key)``; ``None`` if ``cookie`` is not ours."""
        return verify_signed_id(self.signer, cookie)

    def sign(self, session_id: str, permanent: bool) -> str:
        """The cookie for ``session_id``; marked when its session is not permanent."""
        return sign_id(self.signer, session_id, permanent)

    def may_be_permanent(self, cookie: str) -> bool:
        # The mark alone, unverified: a forged one gets what any cookie that does
        # not verify gets, a fresh session, which an untouched request leaves alone.
        return not is_marked(cookie)

    @staticmethod
    def refusal(cookie: str) -> Refusal:
        """Why ``cookie`` did not verify (asked only for one that did not)."""
        if "." not in cookie:
            return "unsigned"
        return "bad_signature" if SIGNED_ID.fullmatch(cookie) else "not_canonical"

    def open(self, cookie: str | None, *, adopt: bool = True) -> Origin:
        """The session ``cookie`` names; ``adopt=False``: never ask the migration source."""
        now = self.clock()
        if cookie is None:
            return Origin.fresh(now)
        verified = self.verify(cookie)
        if verified is None:  # never looked up, and left alone: another key may verify it
            self.metrics.cookie_refused(self.refusal(cookie))
            if self.adoption is None:
                return Origin.fresh(now)
            return self.adoption.open(self, cookie, now, Origin.fresh(now))
        session_id, current_key = verified
        key = store_key(session_id)
        found = self.store.load(key)
        if found is None:
            self.metrics.cookie_refused("unknown_id")
            if self.adoption is None or not adopt:
                return Origin.fresh(now, stale_cookie=True)
            # Ours by its signature, and not here: our own old deployment's (migrate_from
            # one of our stores), or a session that ended.
            return self.adoption.open(self, cookie, now, Origin.fresh(now, stale_cookie=True))
        record, found_at = self.slots.decode(session_id, key, found[0])
        if record is None and Record.is_sealed(found[0]):
            log.warning(
                "sealed session record dropped: it did not authenticate "
                "(changed in the store, sealed with a secret no longer configured, "
                "or the 'cryptography' package is missing)"
            )
        elif record is None and self.slots.seal and found[0] != ENDED:
            log.warning(
                "plain session record dropped: records are sealed, and this one is a "
                "forward or require_sealed is on (written by a server that does not seal, "
                "or planted in the store)"
            )
        if (
            record is None
            # An emptied session is no session (unless empty_is_session); and a
            # regenerated session's old id stops working: its record is a forward,
            # whose text is empty too (record.retired, a Python frame more on every
            # load, would say so: asked of empty records only).
            or (record.text == EMPTY and (record.retired or not self.empty_is_session))
            or self.lifetime.remaining(record.created, record.accessed, record.idle_timeout, now)
            <= 0
        ):
            live = record is not None and (
                record.text != EMPTY or (self.empty_is_session and not record.retired)
            )
            self.metrics.cookie_refused("expired" if live else "unknown_id")
            return Origin.fresh(now, stale_cookie=True)
        try:
            return record.origin(
                session_id,
                version=found[1],
                resign=not current_key,
                found_at=found_at,
                cookie=cookie,
            )
        except ValueError:
            log.warning("unreadable session record dropped")
            self.metrics.cookie_refused("unknown_id")
            return Origin.fresh(now, stale_cookie=True)

    def execute(self, plan: Plan) -> Outcome:
        action = plan.action
        if action in _NO_WRITE:
            return "written"
        session = plan.session
        origin = session.origin
        if action == "delete":  # destroyed, or regenerated and emptied: ours alone
            self.remove(origin.id, session)
            return "written"
        # Besides a move, only a create may be under a new id: an update or a refresh
        # keeps it (decide() says so), so moved() is not asked again for them. Only
        # the owner stamp uses the answer, so without an owner index it is not asked.
        new_id = action == "move" or (
            action == "create" and self.owners is not None and moved(session)
        )
        record = self.record(session, plan.text, plan.now, new_id)
        if action == "create":
            self.write_new(session.id, session, record)
            return "written"
        if action == "move":
            return self.move(origin.id, session.id, session, record)
        if action == "refresh":
            # Whoever wrote first refreshed the record too, and may have retired this id.
            return "written" if self.refresh(origin.id, session, record) else "outrun"
        saved = self.update(origin.id, session, record, origin.version)
        if saved is None:
            return "destroyed"
        saved_slot, saved_record = saved
        if saved_record is record:  # the first compare-and-set took: same slot, our record
            return "emptied" if record.text == EMPTY else "written"
        if saved_record is None:
            return "withheld"
        if saved_slot.key != self._slot(origin.id, origin).key:
            return "moved"
        return "emptied" if saved_record.text == EMPTY else "merged"

    # The writes below are the backend's only ones, shared by execute() and the
    # Django engine (whose ids live in Django's session key, not in the Session):
    # each goes through the session's slot (sealing) and keeps the owner index.

    def record(self, session: Session, text: str, now: float, moved: bool) -> Record:
        """What to store of ``session``, whose data is ``text``; ``moved``: under a new id."""
        owners = self.owners
        owner = owners.stamp(session, now, moved) if owners is not None else None
        return Record.of(session, text, now, owner)

    def write_new(
        self, session_id: str, session: Session, record: Record, *, exclusive: bool = False
    ) -> bool:
        """Store a new session's first record; ``exclusive``: ``False`` if the id is taken."""
        new = self.slots.of(session_id)
        owners = self.owners
        if exclusive or owners is None or record.owner == session.origin.owner:
            if exclusive:
                if not self.writer.write(new, record, None):
                    return False
            else:
                self.writer.create(new, record)
            if owners is not None:
                owners.after_write(session, new.key, new.key, record.owner)
            return True
        # A new owner (a login): listed by the record's own write where the store can.
        self.writer.create(new, record, record.owner)
        owners.forget(session, new.key, new.key, record.owner)
        return True

    def refresh(self, session_id: str, session: Session, record: Record) -> bool:
        """One compare-and-set of ``record`` over the loaded one; ``False`` if it changed."""
        old = self._slot(session_id, session.origin)
        if not self.writer.write(old, record, session.origin.version):
            return False
        if self.owners is not None:
            self.owners.after_write(session, old.key, old.key, record.owner)
        return True

    def update(
        self, session_id: str, session: Session, record: Record, version: Version | None
    ) -> Saved | None:
        """Save ``record``, merging into newer ones (see :meth:`RecordWriter.save`).

        ``version`` ``None``: unknown, so this request's changes are merged
        into whatever is stored (:meth:`RecordWriter.merge`).
        """
        old = self._slot(session_id, session.origin)
        if version is None:
            saved = self.writer.merge(old, record, session)
        else:
            saved = self.writer.save(old, record, version, session)
        owners = self.owners
        if (
            owners is not None
            and saved is not None
            and saved[1] is not None
            and saved[1].owner == record.owner
        ):
            owners.after_write(session, old.key, saved[0].key, record.owner)
        return saved

    def remove(self, session_id: str, session: Session | None) -> None:
        """End ``session_id``'s session, and what a concurrent login made of it.

        ``session``: the request's, if it loaded this record, whose index entry
        goes too. A login that retired the record since this request loaded it
        moved the session: its new record is deleted as well (see
        :meth:`RecordWriter.end`), whichever of the two finishes first.
        """
        old = (
            self.slots.of(session_id) if session is None else self._slot(session_id, session.origin)
        )
        previous = session.origin.owner if self.owners is not None and session is not None else None
        # Its index entry goes with it, in the same round trip where the store can.
        self._end(
            old,
            None if session is None else session.origin.version,
            None if previous is None else previous.digest,
        )

    def _end(self, old: Slot, version: Version | None, owner: str | None = None) -> None:
        """:meth:`RecordWriter.end`, and the index entries of the records it ended beyond.

        ``owner``: the owner hash whose entry for ``old`` goes too.
        """
        ended = self.writer.end(old, version, owner)
        if self.owners is not None:
            for slot, record in ended:
                if record.owner is not None:
                    self.owners.index.unindex_owner(record.owner.digest, slot.key)

    def move(
        self, old_id: str, new_id: str, session: Session, record: Record, *, retire: bool = True
    ) -> Outcome:
        """Store ``record`` under ``new_id`` and retire (or delete) ``old_id``'s record.

        ``retire=False``: delete it instead, as nobody else can hold it (the
        Django engine, for a record written earlier in the same request).
        """
        old = self._slot(old_id, session.origin)
        new = self.slots.of(new_id)
        owners = self.owners
        # Indexed with the new record, before the old one is retired: a revocation
        # running now finds one or the other (see OwnerSessions.revoke).
        self.writer.create(new, record, record.owner if owners is not None else None)
        if not retire:
            self.store.delete(old.key)
        elif session.destroyed:  # a logout, then a new session: the old one ends
            self._end(old, session.origin.version)
        elif not self.writer.retire(old, session.origin.version, new, record, session):
            # The old record was deleted meanwhile (a logout, a revocation): the
            # session it started from is over, and must not live on under a new id.
            self.store.delete(new.key)
            if owners is not None and record.owner is not None:
                owners.index.unindex_owner(record.owner.digest, new.key)
            return "destroyed"
        if owners is not None:
            owners.forget(session, old.key, new.key, record.owner)
        return "written"

    def _slot(self, session_id: str, origin: Origin) -> Slot:
        """``session_id``'s slot: for the loaded record, made of what open() derived already."""
        found_at = origin.found_at
        if origin.id == session_id:
            if isinstance(found_at, Slot):
                return found_at
            if isinstance(found_at, str):
                return self.slots.of(session_id, found_at)
        return self.slots.of(session_id)

    def send(self, plan: Plan) -> CookieUpdate:
        session = plan.session
        origin = session.origin
        value = origin.cookie
        permanent = session.permanent
        if (
            value is None
            or origin.resign
            or session.id != origin.id
            or is_marked(value) == permanent
        ):
            value = self.sign(session.id, permanent)
            if origin.resign and type(origin) is AdoptedOrigin:  # the old cookie goes too
                return CookieUpdate(value, self.max_age(plan), None, origin.replaces)
        # Else the request's own cookie: open() kept it, as it verified with the current
        # key, names this id and is marked as the session is permanent or not, and
        # verification accepts only the exact text signing gives.
        return CookieUpdate(value, self.max_age(plan))
