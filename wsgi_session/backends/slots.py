"""Where a session's record lives in the store, and how it is sealed there.

A :class:`Slot` is one session's record: its store key (a SHA-256 of the id)
and, when records are sealed, the lock derived from the id. Every write of a
record goes through its slot, and every read through :meth:`Slots.decode` or
a slot, so sealing is decided in this module alone.
"""

from __future__ import annotations

import hashlib

from wsgi_session.cookies import KeyRing
from wsgi_session.errors import ConfigurationError
from wsgi_session.record import Record
from wsgi_session.sealing import RecordLock, RecordSealer, can_open_sealed


def check_sealing(seal: bool, require_sealed: bool) -> None:
    """Refuse ``require_sealed`` without ``seal``: nothing would write the sealed records."""
    if require_sealed and not seal:
        raise ConfigurationError(
            "{require_sealed}=True refuses records that are not sealed, so it needs "
            "{seal_records}=True",
            "require_sealed",
            "seal_records",
        )


def store_key(session_id: str) -> str:
    """The store key of ``session_id``: its SHA-256, so the store never holds a usable id."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


class Slot:
    """One session's record: its key, and the lock of its id, made on first use."""

    __slots__ = ("_id", "_lock", "_sealer", "key", "require_sealed", "seal")

    def __init__(
        self,
        key: str,
        session_id: str | None,
        sealer: RecordSealer | None,
        seal: bool,
        require_sealed: bool = False,
    ) -> None:
        """Without a ``sealer`` and a ``session_id`` it neither seals nor opens sealed records."""
        self.key = key
        self._id = session_id
        self._sealer = sealer
        self._lock: RecordLock | None = None
        self.seal = seal and sealer is not None and session_id is not None
        self.require_sealed = require_sealed

    @property
    def lock(self) -> RecordLock | None:
        """The lock of this slot's id (``None``: cannot seal), derived when a record needs it."""
        if self._lock is None and self._sealer is not None and self._id is not None:
            self._lock = self._sealer.lock(self._id, self.key)
        return self._lock

    def encode(self, record: Record) -> bytes:
        return record.encode(self.lock if self.seal else None)

    def decode(self, raw: bytes) -> Record | None:
        """The record in ``raw``; ``None`` if it is unreadable, does not open, or is refused.

        With sealing on, a plain record is refused with ``require_sealed``
        (anyone who can write the store could have planted it), and a plain
        forward always: only a server that does not seal, or an attacker,
        writes one, and following it would write this session's data in the
        clear under a key of the writer's choosing.
        """
        if not self.seal:
            # With sealing off nearly every record is plain, and decodes without
            # the lock: the id's key is derived only for a sealed one.
            record = Record.decode(raw)
            if record is None and Record.is_sealed(raw):
                return Record.decode(raw, self.lock)
            return record
        if Record.is_sealed(raw):
            return Record.decode(raw, self.lock)
        if self.require_sealed:
            return None
        record = Record.decode(raw)
        return None if record is None or record.forward is not None else record

    def forwarding(self, new_id: str, new: Slot) -> bytes:
        """This (retired) record as a pointer to ``new``, the session's record under ``new_id``."""
        lock = self.lock if self.seal else None
        if lock is not None:
            return Record.sealed_forwarding(new_id, lock)
        return Record.forwarding(new.key)


class Slots:
    """Makes the slots of one backend: sealing or not, and with which keys.

    With ``seal=False`` sealed records stay readable while ``cryptography``
    is installed (a deployment switching sealing off), and new ones are plain.
    With ``seal=True`` plain records stay readable (a deployment switching
    sealing on) and are sealed on their next write, unless ``require_sealed``.
    """

    def __init__(self, keys: KeyRing, *, seal: bool, require_sealed: bool = False) -> None:
        check_sealing(seal, require_sealed)
        self.seal = seal
        self.require_sealed = require_sealed
        self.sealer = RecordSealer(keys) if seal or can_open_sealed() else None

    def of(self, session_id: str, key: str | None = None) -> Slot:
        """The slot of ``session_id`` (``key``: its store key, if derived already).

        The id's sealing key is derived only if a record needs it.
        """
        return Slot(
            key or store_key(session_id), session_id, self.sealer, self.seal, self.require_sealed
        )

    def decode(self, session_id: str, key: str, raw: bytes) -> tuple[Record | None, Slot | str]:
        """:meth:`Slot.decode` of ``raw``, found at ``key``, ``session_id``'s store key.

        Also returns where the record was found, for its write: the slot, if
        one was made (a sealed record's key is then derived once per request),
        else ``key``. With sealing off a plain record decodes without a slot:
        nearly every load, spared the slot's two Python frames.
        """
        if not self.seal:
            record = Record.decode(raw)
            if record is not None:
                return record, key
        slot = self.of(session_id, key)
        return slot.decode(raw), slot

    def following(self, record: Record) -> Slot | None:
        """The slot a forwarding ``record`` points to; ``None`` if it is no forward."""
        if record.forward_id is not None:
            return self.of(record.forward_id)
        if record.forward is not None:
            # A plain forward names only the key: that record is read and written in the clear.
            return Slot(record.forward, None, None, False)
        return None
