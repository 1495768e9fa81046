"""Our own stores as a migration source: the old deployment's sessions, read as ours.

Moving from the embedded SQLite file to Redis or memcached (or between any
two of our stores): the old cookie is our own signed id, signed with the
same secrets, and the old record is one of ours, sealed or not. The record
codec and the signing are this library's own, the "old system's code".
"""

from __future__ import annotations

import hashlib

from wsgi_session.cookies import KeyRing
from wsgi_session.migrate.base import Claim, Host, OldCookie, unreadable
from wsgi_session.record import Record
from wsgi_session.sealing import RecordSealer, can_open_sealed
from wsgi_session.serialization import EMPTY, loads
from wsgi_session.signed_id import verify_signed_id
from wsgi_session.stores.base import Store


class StoreSource:
    """The sessions in ``store``, written by a deployment of ours with ``host``'s secrets."""

    cookie: OldCookie | None = None  # our own cookie: same name, same path

    def __init__(self, store: Store, host: Host, description: str) -> None:
        keys = KeyRing(host.secret_key, host.fallback_keys)
        self.store = store
        self.signer = keys.signer("wsgi_session.id")
        self.sealer = RecordSealer(keys) if can_open_sealed() else None
        self.lifetime = host.lifetime
        self.clock = host.clock
        self.description = description

    def _id(self, cookie: str) -> str | None:
        verified = verify_signed_id(self.signer, cookie)  # marked or not, as the backend reads it
        return None if verified is None else verified[0]

    def identify(self, cookie: str) -> str | None:
        return self._id(cookie)  # only the exact text our signer issued verifies

    def claim(self, cookie: str) -> Claim | None:
        session_id = self._id(cookie)
        if session_id is None:
            return None
        key = hashlib.sha256(session_id.encode("ascii")).hexdigest()  # as the old store keyed it
        found = self.store.load(key)
        if found is None:
            return None
        raw = found[0]
        lock = None
        if Record.is_sealed(raw) and self.sealer is not None:
            lock = self.sealer.lock(session_id, key)
        record = Record.decode(raw, lock)
        if record is None:
            unreadable(
                self.description, "not a record this version reads, or sealed with another secret"
            )
            return None
        if record.retired or record.text == EMPTY:
            return None
        now = self.clock()
        remaining = record.accessed + (record.idle_timeout or self.lifetime) - now
        if remaining <= 0:
            return None
        try:
            data = loads(record.text)
        except ValueError:
            unreadable(self.description, "its data is not tagged JSON")
            return None
        return Claim(data, record.permanent, remaining, None, record.created, handle=key)

    def retire(self, claim: Claim) -> None:
        assert isinstance(claim.handle, str)
        self.store.delete(claim.handle)

    def ping(self) -> None:
        self.store.load("0" * 64)
