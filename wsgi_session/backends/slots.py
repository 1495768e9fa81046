"""Where a session's record lives in the store, and how it is sealed there.

A :class:`Slot` is one session's record: its store key (a SHA-256 of the id)
and, when records are sealed, the lock derived from the id. Every read and
write of a record goes through its slot, so sealing is decided in one place.
"""

from __future__ import annotations

import hashlib

from wsgi_session.cookies import KeyRing
from wsgi_session.record import Record
from wsgi_session.sealing import RecordLock, RecordSealer, can_open_sealed


def store_key(session_id: str) -> str:
    """The store key of ``session_id``: its SHA-256, so the store never holds a usable id."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


class Slot:
    """One session's record: its key, and the lock of its id (``None``: cannot seal)."""

    __slots__ = ("key", "lock", "seal")

    def __init__(self, key: str, lock: RecordLock | None, seal: bool) -> None:
        self.key = key
        self.lock = lock
        self.seal = seal and lock is not None

    def encode(self, record: Record) -> bytes:
        return record.encode(self.lock if self.seal else None)

    def decode(self, raw: bytes) -> Record | None:
        return Record.decode(raw, self.lock)

    def forwarding(self, new_id: str, new: Slot) -> bytes:
        """This (retired) record as a pointer to ``new``, the session's record under ``new_id``."""
        if self.seal and self.lock is not None:
            return Record.sealed_forwarding(new_id, self.lock)
        return Record.forwarding(new.key)


class Slots:
    """Makes the slots of one backend: sealing or not, and with which keys.

    With ``seal=False`` sealed records stay readable while ``cryptography``
    is installed (a deployment switching sealing off), and new ones are plain.
    """

    def __init__(self, keys: KeyRing, *, seal: bool) -> None:
        self.seal = seal
        self.sealer = RecordSealer(keys) if seal or can_open_sealed() else None

    def of(self, session_id: str) -> Slot:
        """The slot of ``session_id``; its key is derived only if a record needs it."""
        key = store_key(session_id)
        lock = None if self.sealer is None else self.sealer.lock(session_id, key)
        return Slot(key, lock, self.seal)

    def following(self, record: Record) -> Slot | None:
        """The slot a forwarding ``record`` points to; ``None`` if it is no forward."""
        if record.forward_id is not None:
            return self.of(record.forward_id)
        if record.forward is not None:
            # A plain forward names only the key: that record is read and written in the clear.
            return Slot(record.forward, None, False)
        return None
