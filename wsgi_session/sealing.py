"""Sealed records: each session's record encrypted under a key that only its id opens.

A session's key is derived with HKDF (SHA-256, from ``cryptography``) in two
steps: once per server secret, ``HKDF(secret, info=PURPOSE)``; then per
session, ``HKDF-Expand(that, info=PURPOSE + " " + id)``, every request anew.
The store only ever sees a hash of the id, so whoever holds the store but no
cookie can neither read nor forge a record, and one cookie opens one session.
AES-256-GCM seals the record's data; the record's header bytes and its store
key are the associated data, so neither can be changed or the record moved to
another key.

Needs the optional ``cryptography`` package: ``pip install 'wsgi-session[crypto]'``.
"""

from __future__ import annotations

import os

from wsgi_session.cookies import KeyRing
from wsgi_session.crypto import NONCE_BYTES, require_cryptography

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
except ImportError:  # optional dependency: RecordSealer() says how to install it
    AESGCM = None  # type: ignore[assignment, misc]

PURPOSE = b"wsgi_session.record.aes-256-gcm"
KEY_BYTES = 32


def can_open_sealed() -> bool:
    """Whether ``cryptography`` is installed, so sealed records can be opened at all."""
    return AESGCM is not None


class RecordSealer:
    """The per-secret master keys; hands out one :class:`RecordLock` per session.

    Seals with the current secret's key; opens with any key of the ring, so
    records sealed before a rotation stay readable (and are sealed with the
    current key on their next write).
    """

    def __init__(
        self, keys: KeyRing, setting: str = "seal_records", purpose: bytes = PURPOSE
    ) -> None:
        """``purpose``: sets apart the keys of what is sealed (records, clients)."""
        require_cryptography(setting)
        self.info = purpose + b" "  # a session's info is this and its id
        self.hash = SHA256()  # a stateless descriptor, shared: one fewer object per session
        # Current secret first: it is the one nearly every record was sealed with.
        self.masters = [
            HKDF(self.hash, KEY_BYTES, salt=None, info=purpose).derive(secret)
            for secret in (keys.secret_key, *keys.fallback_keys)
        ]

    def lock(self, session_id: str, binding: str) -> RecordLock:
        """The lock of ``session_id``'s record, kept at store key ``binding``."""
        return RecordLock(self, session_id, binding)


class RecordLock:
    """One session's record key, derived when the lock is made, for this request only.

    A lock is made only when a record is sealed or opened, and both need the
    current secret's key; a fallback secret's key is derived only for a record
    the current one does not open. The associated data of every seal is the
    store key and the record's header, exactly as written: whatever fields a
    header holds are covered.
    """

    __slots__ = ("_binding", "_current", "_info", "_sealer")

    def __init__(self, sealer: RecordSealer, session_id: str, binding: str) -> None:
        self._sealer = sealer
        self._info = sealer.info + session_id.encode("ascii")
        self._binding = binding.encode("ascii") + b"\n"
        self._current = self._cipher(0)

    def _cipher(self, index: int) -> AESGCM:
        """The AES-GCM of this session's key under the ``index``-th secret (0: current)."""
        sealer = self._sealer
        key = HKDFExpand(sealer.hash, KEY_BYTES, info=self._info).derive(sealer.masters[index])
        return AESGCM(key)

    def seal(self, data: bytes, header: bytes) -> bytes:
        """``nonce + ciphertext + tag`` of ``data``, bound to ``header`` and the store key."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._current.encrypt(nonce, data, self._binding + header)

    def open(self, sealed: bytes, header: bytes) -> bytes | None:
        """The data :meth:`seal` sealed with this ``header``, or ``None`` if no key opens it."""
        nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        if len(nonce) < NONCE_BYTES:
            return None
        aad = self._binding + header
        try:
            return self._current.decrypt(nonce, body, aad)
        except InvalidTag:
            pass
        # Sealed before a secret rotation, with a key of the ring's older secrets.
        for index in range(1, len(self._sealer.masters)):
            try:
                return self._cipher(index).decrypt(nonce, body, aad)
            except InvalidTag:
                continue
        return None
