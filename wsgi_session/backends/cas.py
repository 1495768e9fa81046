"""Compare-and-set writes of session records, merging into what a concurrent request wrote.

Two requests on one session load the same record; the second to save finds
it changed. Instead of overwriting, it re-applies its own changes (the keys it
set or deleted, the flags it changed) onto the newer record and tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Literal, cast

from wsgi_session.backends.slots import Slot, Slots
from wsgi_session.errors import StoreWriteFailed
from wsgi_session.lifetime import Lifetime
from wsgi_session.owner import Owner
from wsgi_session.record import ENDED, Record
from wsgi_session.serialization import dumps, loads
from wsgi_session.session import Origin, Session
from wsgi_session.stores.base import IndexedWrites, OwnerIndex, Store, Version

log = logging.getLogger("wsgi_session")

FORWARD_TTL = 300
# A save conflicts only when another request's save landed first, so a request
# retries at most once per request racing it; the bound only stops a store that
# misbehaves from looping forever. 10 was too low: 22 gunicorn workers writing one
# session at once on memcached made a request conflict 10 times and answer 503.
MAX_ATTEMPTS = 100


class ConflictStats:
    """Counts of concurrent-write events, for monitoring and tests; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.conflicts = 0  # saves refused because another request wrote first
        self.merges = 0  # times a request's changes were re-applied onto a newer record
        # saves dropped because the session was destroyed meanwhile, or a login moved
        # it to another owner (see RecordWriter.merge)
        self.dropped = 0

    def count(self, event: Literal["conflicts", "merges", "dropped"]) -> None:
        with self._lock:
            setattr(self, event, getattr(self, event) + 1)

    def as_dict(self) -> dict[str, int]:
        return {"conflicts": self.conflicts, "merges": self.merges, "dropped": self.dropped}


Saved = tuple[Slot, Record | None]
"""Where a save landed and the record written there; ``None``: written nowhere, as
the session moved to another owner (see :meth:`RecordWriter.merge`)."""


def same_digest(origin: Origin, owner: Owner | None) -> bool:
    """Whether ``owner`` is the owner of the record ``origin`` loaded, by its hash."""
    loaded = origin.owner
    if loaded is None or owner is None:
        return loaded is owner
    return loaded.digest == owner.digest


class RecordWriter:
    """Writes records to a store by compare-and-set, each kept as long as it can live.

    ``same_owner`` says whether a record's owner is the one a request loaded
    (the backend's owner tracking knows the hashes of every key, for a record
    written before a key rotation): a request's changes never cross a forward
    into another owner's session.
    """

    def __init__(
        self,
        store: Store,
        lifetime: Lifetime,
        slots: Slots,
        same_owner: Callable[[Origin, Owner | None], bool] = same_digest,
    ) -> None:
        self.store = store
        self.lifetime = lifetime
        self.slots = slots
        self.same_owner = same_owner
        self.stats = ConflictStats()
        # A store that writes a record and its owner index entry in one round trip.
        self.folded: IndexedWrites | None = store if isinstance(store, IndexedWrites) else None

    def write(self, slot: Slot, record: Record, version: Version | None) -> bool:
        """One compare-and-set of ``record``; ``False`` if the record changed meanwhile."""
        return self._write(slot, record, version)[0]

    def _write(
        self, slot: Slot, record: Record, version: Version | None, owner: Owner | None = None
    ) -> tuple[bool, bytes]:
        ttl = self.lifetime.whole_seconds(record.created, record.accessed, record.idle_timeout)
        data = slot.encode(record)
        if owner is None:
            return self.store.save(slot.key, data, ttl, version), data
        if self.folded is not None:
            folded = self.folded.save_indexed
            return folded(slot.key, data, ttl, version, owner.digest, owner.indexed_until), data
        written = self.store.save(slot.key, data, ttl, version)
        if written:
            self._index().index_owner(owner.digest, slot.key, owner.indexed_until)
        return written, data

    def create(self, slot: Slot, record: Record, owner: Owner | None = None) -> None:
        """Store a new session's first record; ``owner``: list it under that owner too.

        With ``owner``, on a store that can (:class:`IndexedWrites`), the record
        and its index entry are written in one round trip.
        """
        written, data = self._write(slot, record, None, owner)
        if written:
            return
        # A fresh 256-bit id cannot collide; "exists" means a client retry (after
        # a dropped connection) repeated a create that had landed. Ours? Fine.
        # (The very bytes: a sealed record is different each time it is sealed.)
        found = self.store.load(slot.key)
        if found is None or found[0] != data:
            raise StoreWriteFailed("a new session id collided with a stored one")
        if owner is not None:  # whether the first try indexed it is unknown: again
            self._index().index_owner(owner.digest, slot.key, owner.indexed_until)

    def delete(self, key: str, owner: str | None = None) -> None:
        """Delete the record ``key``; ``owner``: drop its entry in that owner's index too.

        In one round trip on a store that can (:class:`IndexedWrites`).
        """
        if owner is None:
            self.store.delete(key)
        elif self.folded is not None:
            self.folded.delete_indexed(key, owner)
        else:
            self.store.delete(key)
            self._index().unindex_owner(owner, key)

    def _index(self) -> OwnerIndex:
        # Asked only with an owner, which the backend passes only for an OwnerIndex store.
        return cast("OwnerIndex", self.store)

    def save(
        self, slot: Slot, record: Record, version: Version | None, session: Session
    ) -> Saved | None:
        """Compare-and-set ``record``, merging into newer records.

        Returns the slot and record saved (a regenerated session's new slot if a
        concurrent request moved it; no record if that login made it another
        owner's session), or ``None`` if the session was destroyed.
        """
        if self._write(slot, record, version)[0]:  # write(), a frame fewer on every save
            return slot, record
        self.stats.count("conflicts")
        return self.merge(slot, record, session)

    def merge(self, slot: Slot, ours: Record, session: Session) -> Saved | None:
        """Apply this request's changes (``ours``: ``session`` saved) to the stored record.

        For a record whose version this request does not know (the Django
        engine's, after a write earlier in the request): whatever is stored
        may hold a concurrent request's changes, so ``ours`` must not replace it.
        A forward left by a concurrent login is followed only into a session of
        the owner this request loaded: a request still holding the id from
        before the login (perhaps an attacker's, who planted it) must not write
        into the logged-in session. Returns as :meth:`save` does.
        """
        loaded_key = slot.key
        for _ in range(MAX_ATTEMPTS):
            found = self._follow(slot)
            if found is None:
                self.stats.count("dropped")
                log.warning(
                    "session was destroyed by a concurrent request (or lost with the store "
                    "server that held it); this request's changes are dropped and its "
                    "cookie expired"
                )
                return None
            slot, theirs, version = found
            if slot.key != loaded_key and not self.same_owner(session.origin, theirs.owner):
                self.stats.count("dropped")
                log.warning(
                    "session was moved to another owner by a concurrent login; this "
                    "request, which loaded it before, has its changes dropped"
                )
                return slot, None
            record = self._merged(theirs, session, ours)
            self.stats.count("merges")
            if self.write(slot, record, version):
                return slot, record
            self.stats.count("conflicts")
        raise StoreWriteFailed(f"session save kept conflicting after {MAX_ATTEMPTS} tries")

    def retire(
        self, old: Slot, version: Version | None, new: Slot, ours: Record, session: Session
    ) -> bool:
        """Replace a regenerated session's old record by a pointer to the new one, ``ours``.

        Loads never follow the pointer (the old id must stop working), but a
        concurrent request that loaded the old record does, so what it writes
        lands in the new record instead of being lost. ``False``: the old record
        is gone (a concurrent logout or revocation), and the new one must go too.
        """
        forwarding = old.forwarding(session.id, new)
        for _ in range(MAX_ATTEMPTS):
            if self.store.save(old.key, forwarding, FORWARD_TTL, version):
                return True
            self.stats.count("conflicts")
            found = self.store.load(old.key)
            if found is None or found[0] == ENDED:
                return False
            theirs = old.decode(found[0])
            if theirs is None or self.slots.following(theirs) is not None:
                return True
            # Another request wrote the old record after we loaded it: carry its changes over.
            merged = self._merged(theirs, session, ours)
            current = self.store.load(new.key)
            if current is not None:
                self.save(new, merged, current[1], session)
            version = found[1]
        raise StoreWriteFailed(f"could not retire the old session record in {MAX_ATTEMPTS} tries")

    def end(
        self, slot: Slot, version: Version | None, owner: str | None = None
    ) -> list[tuple[Slot, Record]]:
        """Delete the session in ``slot``, and what a concurrent login made of it.

        A logout loaded the record (``version``; ``None``: unknown, so it is
        read first). A login racing it may have retired that record since,
        leaving a forward to the session's new record, or may do so at any
        moment. So the record is first replaced by :data:`ENDED`, by
        compare-and-set: a login retiring it afterwards finds it ended and
        deletes its own new record (:meth:`retire` answers ``False``). If it
        changed meanwhile, it is read again: a forward is ended the same way,
        then the record it leads to. Returns the live records ended beyond
        ``slot`` (whose owner index entries go too). ``owner``: ``slot``'s entry
        under that owner hash goes too (with the record's deletion, in one round
        trip, where the store can).
        """
        ended: list[tuple[Slot, Record]] = []
        current, record = slot, None
        for _ in range(MAX_ATTEMPTS):
            if version is None:
                found = self.store.load(current.key)
                if found is None or found[0] == ENDED:
                    if owner is not None and current is slot:
                        self._index().unindex_owner(owner, slot.key)
                    return ended
                record, version = current.decode(found[0]), found[1]
            if not self.store.save(current.key, ENDED, FORWARD_TTL, version):
                self.stats.count("conflicts")
                version = None  # a concurrent write or login: read what it left
                continue
            self.delete(current.key, owner if current is slot else None)
            forward = None if record is None else self.slots.following(record)
            if forward is None:
                if record is not None and current is not slot:
                    ended.append((current, record))
                return ended
            current, record, version = forward, None, None
        raise StoreWriteFailed(f"could not end the session record in {MAX_ATTEMPTS} tries")

    def _follow(self, slot: Slot) -> tuple[Slot, Record, Version] | None:
        """The live record in ``slot``, following forwards left by regenerations."""
        for _ in range(MAX_ATTEMPTS):
            found = self.store.load(slot.key)
            theirs = slot.decode(found[0]) if found else None
            if found is None or theirs is None:
                return None
            forward = self.slots.following(theirs)
            if forward is None:
                return slot, theirs, found[1]
            slot = forward
        return None

    def _merged(self, theirs: Record, session: Session, ours: Record) -> Record:
        """``theirs`` with this request's own changes (``ours``) applied on top."""
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
        owner = ours.owner if ours.owner != origin.owner else theirs.owner
        return Record(
            theirs.created, self.lifetime.clock(), permanent, idle_timeout, dumps(data), owner=owner
        )
