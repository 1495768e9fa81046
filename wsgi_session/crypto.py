"""Authenticated encryption of cookie values (AES-256-GCM), with key rotation.

Needs the optional ``cryptography`` package: ``pip install 'wsgi-session[crypto]'``.
"""

from __future__ import annotations

import os

from wsgi_session.cookies import KeyRing
from wsgi_session.errors import ConfigurationError

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # optional dependency: Cipher() says how to install it
    AESGCM = None  # type: ignore[assignment, misc]

NONCE_BYTES = 12


def require_cryptography(setting: str = "encrypt") -> None:
    """Raise a ``ConfigurationError`` naming ``setting`` (the option) without ``cryptography``."""
    if AESGCM is None:
        raise ConfigurationError(
            f"{{{setting}}}=True needs the 'cryptography' package: "
            "pip install 'wsgi-session[crypto]'",
            setting,
        )


class Cipher:
    """Encrypts with the current secret's key; decrypts with any key of the ring.

    Keys are derived from the secrets with HMAC-SHA256 and a purpose string,
    so they differ from every signing key. Nonces are random: rotate the
    secret before one key has encrypted about 2**32 values (NIST's bound).
    """

    def __init__(self, keys: KeyRing, purpose: str) -> None:
        require_cryptography()
        self._aad = purpose.encode()
        # Current key first: it is the one nearly every cookie was sealed with.
        self._keys = [AESGCM(key) for key in reversed(keys.derive(purpose))]

    def encrypt(self, data: bytes) -> bytes:
        """``nonce + ciphertext + tag``."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._keys[0].encrypt(nonce, data, self._aad)

    def decrypt(self, sealed: bytes) -> tuple[bytes, bool] | None:
        """``(data, sealed_with_current_key)``, or ``None`` if no key opens it."""
        nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
        if len(nonce) < NONCE_BYTES:
            return None
        for index, key in enumerate(self._keys):
            try:
                return key.decrypt(nonce, body, self._aad), index == 0
            except InvalidTag:
                continue
        return None
