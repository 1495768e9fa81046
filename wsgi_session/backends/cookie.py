"""The cookie store: the whole session lives in the cookie, nothing on the server.

A cookie value, format 1::

    signed      "S" + base64(body) + "." + base64(HMAC-SHA256)    (itsdangerous)
    encrypted   "E" + base64(nonce + AES-GCM(body))
    body        codec + payload       codec: b"j" as is, b"z" zlib-compressed
    payload     b"<created> <accessed> <permanent> <idle timeout or 0> <nonce> <tagged JSON>"
                (:meth:`wsgi_session.record.Record.encode_with_id`)

Timeouts are enforced from the signed timestamps, so a copy of an old cookie
is refused once its session would have expired. The nonce is the session's
``id``: :meth:`~wsgi_session.session.Session.regenerate` changes it, so an old
copy can be told apart from the current cookie.

What a cookie store cannot do: revoke. A copied cookie stays valid until it
expires, even after ``destroy()`` or ``regenerate()``, because the server keeps
nothing to compare it with. Keep ``idle_timeout``/``absolute_timeout`` short,
or use a server-side store when a stolen cookie must be stoppable at once.
"""

from __future__ import annotations

import zlib
from functools import partial
from typing import Protocol

from itsdangerous import BadData

from wsgi_session.backends.base import BaseBackend, CookieUpdate
from wsgi_session.backends.owners import NoSessions, Sessions
from wsgi_session.cookies import CookieSigner, KeyRing, decode_canonical, encode_canonical
from wsgi_session.crypto import Cipher, require_cryptography
from wsgi_session.decision import Outcome, Plan
from wsgi_session.errors import ConfigurationError, SessionTooLarge
from wsgi_session.lifetime import Lifetime
from wsgi_session.metrics.base import Refusal
from wsgi_session.record import Record
from wsgi_session.serialization import EMPTY, dumps
from wsgi_session.session import Origin, Session

MAX_SIZE = 4093  # bytes of a Set-Cookie header every browser keeps (werkzeug's limit too)
SIGN_PURPOSE = "wsgi_session.cookie"
ENCRYPT_PURPOSE = "wsgi_session.cookie.aes-gcm"
SIGNED = "S"
ENCRYPTED = "E"
PLAIN = b"j"
ZLIB = b"z"
COMPRESS_ABOVE = 256  # payload bytes; below this zlib rarely saves anything
LARGEST_KEYS = 3


class _Protection(Protocol):
    def seal(self, body: bytes) -> str: ...

    def open(self, value: str) -> tuple[bytes, bool] | Refusal:
        """``(body, sealed_with_current_key)``, or why ``value`` is not ours."""
        ...


class _Signed:
    """Tamper-evident but readable by the client."""

    def __init__(self, keys: KeyRing) -> None:
        self.signer: CookieSigner = keys.signer(SIGN_PURPOSE)

    def seal(self, body: bytes) -> str:
        return self.signer.sign(SIGNED + encode_canonical(body))

    def open(self, value: str) -> tuple[bytes, bool] | Refusal:
        if value[:1] != SIGNED:
            return "not_canonical"
        verified = self.signer.unsign(value)
        if verified is None:
            return "bad_signature" if "." in value else "unsigned"
        text, current = verified
        body = decode_canonical(text[1:])
        return "not_canonical" if body is None else (body, current)


class _Encrypted:
    """Tamper-evident and unreadable by the client."""

    def __init__(self, keys: KeyRing) -> None:
        self.cipher = Cipher(keys, ENCRYPT_PURPOSE)

    def seal(self, body: bytes) -> str:
        return ENCRYPTED + encode_canonical(self.cipher.encrypt(body))

    def open(self, value: str) -> tuple[bytes, bool] | Refusal:
        if value[:1] != ENCRYPTED:
            return "not_canonical"
        sealed = decode_canonical(value[1:])
        if sealed is None:
            return "not_canonical"
        return self.cipher.decrypt(sealed) or "bad_signature"


class CookieStore:
    """Sessions kept entirely in a signed (optionally encrypted) cookie.

    ``compress``: zlib-compress payloads when that makes them shorter. The
    default compresses signed cookies but not encrypted ones, whose length
    would then reveal how much of the content an attacker could guess
    (the CRIME attack). ``encrypt``: AES-GCM, needs ``wsgi-session[crypto]``.
    ``max_size``: the largest Set-Cookie header (name, value and attributes)
    allowed; a session that does not fit raises :class:`SessionTooLarge`
    instead of being dropped silently by the browser.
    """

    def __init__(
        self, *, compress: bool | None = None, encrypt: bool = False, max_size: int = MAX_SIZE
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= 0:
            raise ConfigurationError(
                "{max_size} must be a number of bytes > 0, not {value!r}",
                "max_size",
                value=max_size,
            )
        if encrypt:
            require_cryptography()
        self.compress = not encrypt if compress is None else compress
        self.encrypt = encrypt
        self.max_size = max_size

    def make_backend(self, keys: KeyRing, lifetime: Lifetime) -> CookieBackend:
        return CookieBackend(
            keys, lifetime, compress=self.compress, encrypt=self.encrypt, max_size=self.max_size
        )


class CookieBackend(BaseBackend):
    """Reads the session out of its cookie; every write is a new cookie."""

    cookie_holds_data = True
    sessions: Sessions = NoSessions(
        "the cookie store keeps each session in its browser's cookie: the server has no "
        "list of a user's sessions and cannot end one before its cookie expires. Use a "
        "server-side store (SQLite, memcached, Redis) to list and revoke sessions"
    )

    def __init__(
        self,
        keys: KeyRing,
        lifetime: Lifetime,
        *,
        compress: bool = True,
        encrypt: bool = False,
        max_size: int = MAX_SIZE,
    ) -> None:
        super().__init__(lifetime)
        self.protection: _Protection = _Encrypted(keys) if encrypt else _Signed(keys)
        self.compress = compress
        self.max_size = max_size

    def open(self, cookie: str | None) -> Origin:
        now = self.clock()
        if cookie is None:
            return Origin.fresh(now)
        # Nothing we wrote is longer than max_size: refuse bigger values before any work.
        if len(cookie) > self.max_size:
            self.metrics.cookie_refused("not_canonical")
            return Origin.fresh(now)
        origin = self._read(cookie, now)
        # One that did not verify is left alone: a server with another key may read it.
        return origin or Origin.fresh(now)

    def execute(self, plan: Plan) -> Outcome:
        # Nothing is kept on the server: the cookie is the write. An emptied
        # session has nothing to put in one.
        if plan.action == "update" and plan.text == EMPTY:
            return "emptied"
        return "written"

    def send(self, plan: Plan) -> CookieUpdate:
        session = plan.session
        payload = Record.of(session, plan.text, plan.now).encode_with_id(session.id)
        value = self.protection.seal(self._encode(payload))
        return CookieUpdate(value, self.max_age(plan), partial(self._check_size, session))

    def _encode(self, payload: bytes) -> bytes:
        if self.compress and len(payload) > COMPRESS_ABOVE:
            # A 4 KB window and little memory: cookies are small, and zlib's
            # defaults spend more time allocating than compressing them.
            compressor = zlib.compressobj(6, zlib.DEFLATED, 12, 4)
            packed = compressor.compress(payload) + compressor.flush()
            if len(packed) < len(payload):
                return ZLIB + packed
        return PLAIN + payload

    def _read(self, cookie: str, now: float) -> Origin | None:
        """The session in ``cookie``; ``None`` if it did not verify.

        A cookie that verified but holds no live session (expired, unreadable)
        gives a fresh origin with ``stale_cookie`` set, so the response expires it.
        """
        try:
            opened = self.protection.open(cookie)
        except (BadData, ValueError):
            opened = "bad_signature"
        if isinstance(opened, str):
            self.metrics.cookie_refused(opened)
            return None
        body, current = opened
        try:
            codec, payload = body[:1], body[1:]
            if codec == ZLIB:
                payload = zlib.decompress(payload)
            elif codec != PLAIN:
                raise ValueError("unknown codec")
            found = Record.decode_with_id(payload)
            if found is None:
                raise ValueError("not a record")
            nonce, record = found
            if (
                self.lifetime.remaining(record.created, record.accessed, record.idle_timeout, now)
                > 0
            ):
                return record.origin(nonce, resign=not current)
            self.metrics.cookie_refused("expired")
        except (ValueError, zlib.error):
            self.metrics.cookie_refused("unknown_id")  # verified, yet no record: none we wrote
        return Origin.fresh(now, stale_cookie=True)

    def _check_size(self, session: Session, header: str) -> None:
        """Refuse a Set-Cookie header browsers would drop without a word."""
        if len(header) <= self.max_size:
            return
        sizes = sorted(
            ((len(dumps({key: value}).encode()), key) for key, value in session.items()),
            reverse=True,
        )
        largest = ", ".join(f"{key!r} ({size} bytes)" for size, key in sizes[:LARGEST_KEYS])
        raise SessionTooLarge(
            f"the session cookie would be {len(header)} bytes, over max_size={self.max_size} "
            f"(browsers drop larger cookies); largest keys: {largest}. Keep less in the "
            "session or use a server-side store"
        )
