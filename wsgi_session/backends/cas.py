"""Compare-and-set writes of session records, merging into what a concurrent request wrote.

Two requests on one session load the same record; the second to save finds
it changed. Instead of overwriting, it re-applies its own changes (the keys it
set or deleted, the flags it changed) onto the newer record and tries again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal, cast

from wsgi_session.backends.slots import Slot, Slots
from wsgi_session.errors import StoreWriteFailed
from wsgi_session.lifetime import Lifetime
from wsgi_session.owner import Owner
from wsgi_session.record import Record
from wsgi_session.serialization import dumps, loads
from wsgi_session.session import Session
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
        self.dropped = 0  # saves dropped because the session was destroyed meanwhile

    def count(self, event: Literal["conflicts", "merges", "dropped"]) -> None:
        with self._lock:
            setattr(self, event, getattr(self, event) + 1)

    def as_dict(self) -> dict[str, int]:
        return {"conflicts": self.conflicts, "merges": self.merges, "dropped": self.dropped}


class RecordWriter:
    """Writes records to a store by compare-and-set, each kept as long as it can live."""

    def __init__(self, store: Store, lifetime: Lifetime, slots: Slots) -> None:
        self.store = store
        self.lifetime = lifetime
        self.slots = slots
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
    ) -> tuple[Slot, Record] | None:
        """Compare-and-set ``record``, merging into newer records.

        Returns the key and record saved (a regenerated session's new key if a
        concurrent request moved it), or ``None`` if the session was destroyed.
        """
        if self._write(slot, record, version)[0]:  # write(), a frame fewer on every save
            return slot, record
        self.stats.count("conflicts")
        return self.merge(slot, record, session)

    def merge(self, slot: Slot, ours: Record, session: Session) -> tuple[Slot, Record] | None:
        """Apply this request's changes (``ours``: ``session`` saved) to the stored record.

        For a record whose version this request does not know (the Django
        engine's, after a write earlier in the request): whatever is stored
        may hold a concurrent request's changes, so ``ours`` must not replace it.
        Returns as :meth:`save` does.
        """
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
            if found is None:
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
