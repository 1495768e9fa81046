"""Flask's built-in signed cookie sessions as a migration source (``migrate_from="flask"``).

The old session is the cookie itself, read with Flask's own signing
serializer (``SecureCookieSessionInterface``: its salt, its tagged JSON, its
key derivation) under ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS``, and
refused past ``PERMANENT_SESSION_LIFETIME`` as Flask refuses it. Verifying
the signature needs no I/O, so a forged or expired cookie costs no lookup.
There is no old record to delete: the mark adoption leaves is what keeps an
old cookie from being adopted twice.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from wsgi_session.migrate.base import Claim, Host, OldCookie

if TYPE_CHECKING:
    from flask import Flask
    from itsdangerous import URLSafeTimedSerializer

# Far beyond what a browser keeps for one cookie (4 KiB): nothing longer is verified.
MAX_COOKIE = 8192
PERMANENT = "_permanent"  # where Flask's SecureCookieSession keeps session.permanent


class FlaskCookieSource:
    """The sessions Flask's ``SecureCookieSessionInterface`` kept in the cookie ``cookie``."""

    description = "flask (Flask's signed cookie sessions)"

    def __init__(self, host: Host, cookie: OldCookie | None = None) -> None:
        from flask.sessions import SecureCookieSessionInterface  # the old system's own code

        # Flask's serializer is made from an app; it reads only these two settings of it.
        holder = SimpleNamespace(
            secret_key=host.secret_key,
            config={"SECRET_KEY_FALLBACKS": list(host.fallback_keys)},
        )
        serializer = SecureCookieSessionInterface().get_signing_serializer(cast("Flask", holder))
        assert serializer is not None  # a secret key is always set
        self.serializer: URLSafeTimedSerializer = serializer
        self.max_age = host.lifetime
        self.clock = host.clock
        self.cookie: OldCookie | None = cookie if cookie is not None else host.cookie

    def _loads(self, cookie: str) -> tuple[dict[str, Any], float] | None:
        """The session data and when it was signed; ``None`` as Flask would refuse it."""
        from itsdangerous import BadData, BadSignature
        from itsdangerous.encoding import base64_decode, base64_encode

        if not cookie or len(cookie) > MAX_COOKIE or not cookie.isascii():
            return None
        # itsdangerous decodes a signature leniently (padding, the unused low bits of its
        # last character); only the spelling Flask issued is an old cookie, so that one
        # old session is never adopted twice under two spellings.
        signature = cookie.rpartition(".")[2].encode("ascii")
        try:
            if base64_encode(base64_decode(signature)) != signature:
                return None
        except BadData:
            return None
        try:
            data, signed_at = self.serializer.loads(
                cookie, max_age=self.max_age, return_timestamp=True
            )
        except BadSignature:  # a bad or expired signature, or a payload that does not decode
            return None
        if not isinstance(data, dict):
            return None
        return data, signed_at.timestamp()

    def identify(self, cookie: str) -> str | None:
        # The cookie is the session: its exact text, which _loads holds to Flask's spelling.
        return cookie if self._loads(cookie) is not None else None

    def claim(self, cookie: str) -> Claim | None:
        loaded = self._loads(cookie)
        if loaded is None:
            return None
        data, signed_at = loaded
        permanent = bool(data.pop(PERMANENT, False))
        remaining = signed_at + self.max_age - self.clock()
        return Claim(data, permanent, remaining, self.cookie)

    def retire(self, claim: Claim) -> None:
        """Nothing to delete: the session was the cookie."""

    def ping(self) -> None:
        """Nothing to reach: the session is the cookie."""
