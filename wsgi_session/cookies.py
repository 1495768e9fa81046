"""Cookie policy (attributes, parsing, Set-Cookie) and signing of cookie values."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from werkzeug.http import dump_cookie

from wsgi_session.errors import ConfigurationError
from wsgi_session.wsgi import WSGIEnvironment

log = logging.getLogger("wsgi_session")

SAMESITE_VALUES = {"strict": "Strict", "lax": "Lax", "none": "None"}
MIN_SECRET_BYTES = 32
# The characters werkzeug writes as they are (no quotes, no escapes): all the server issues.
_UNQUOTED = (string.ascii_letters + string.digits + "._-").encode("ascii")
# Mount points seen (SCRIPT_NAME) times schemes times Max-Ages, of the current second
# (older ones are never asked again): a handful; the bound only clears the old seconds.
_ATTRIBUTE_CACHE_SIZE = 64


@dataclass(frozen=True)
class CookiePolicy:
    """Where the session cookie is sent and who may read it.

    ``path=None`` uses the application's mount point (``SCRIPT_NAME``) and
    ``secure=None`` follows the request's scheme, so one configuration works
    behind any prefix and on both http (development) and https.
    """

    name: str = "session"
    domain: str | None = None
    path: str | None = None
    secure: bool | None = None
    httponly: bool = True
    samesite: str | None = "Lax"
    partitioned: bool = False
    # Another system's session cookie, read when ours is absent: the one a
    # migration source adopts (migrate_from), where its name is not ours.
    old_name: str | None = None
    # Set-Cookie attributes by (path, secure, max_age, expires), see dump(); not part
    # of the policy's identity.
    _attributes: dict[tuple[str, bool, int | None, int | None], str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ' =;,"\t\r\n'):
            raise ConfigurationError(
                "{cookie_name} {name!r} is not a valid cookie name", "cookie_name", name=self.name
            )
        if self.samesite is not None:
            normalized = SAMESITE_VALUES.get(str(self.samesite).lower())
            if normalized is None:
                raise ConfigurationError(
                    "{cookie_samesite} must be 'Strict', 'Lax', 'None' or None, not {value!r}",
                    "cookie_samesite",
                    value=self.samesite,
                )
            object.__setattr__(self, "samesite", normalized)
        if self.samesite == "None" and self.secure is not True:
            raise ConfigurationError(
                "{cookie_samesite}='None' requires {cookie_secure}=True (browsers insist)",
                "cookie_samesite",
                "cookie_secure",
            )
        if self.partitioned and self.secure is not True:
            raise ConfigurationError(
                "{cookie_partitioned}=True requires {cookie_secure}=True (browsers insist)",
                "cookie_partitioned",
                "cookie_secure",
            )
        if self.name.startswith(("__Secure-", "__Host-")) and self.secure is not True:
            raise ConfigurationError(
                "{cookie_name} {name!r} requires {cookie_secure}=True",
                "cookie_name",
                "cookie_secure",
                name=self.name,
            )
        if self.name.startswith("__Host-"):
            if self.domain is not None:
                raise ConfigurationError(
                    "{cookie_name} {name!r} forbids a {cookie_domain}",
                    "cookie_name",
                    "cookie_domain",
                    name=self.name,
                )
            if self.path not in (None, "/"):
                raise ConfigurationError(
                    "{cookie_name} {name!r} requires {cookie_path}='/'",
                    "cookie_name",
                    "cookie_path",
                    name=self.name,
                )
            object.__setattr__(self, "path", "/")
        if self.path is not None and not self.path.startswith("/"):
            raise ConfigurationError(
                "{cookie_path} must start with '/', not {path!r}", "cookie_path", path=self.path
            )

    def read(self, environ: WSGIEnvironment) -> str | None:
        """The raw value the client sent for this cookie (the first one), or ``None``.

        Raw: no unquoting, no backslash escapes (``"..."``, ``\\056``), so the
        value verified is byte for byte what the client sent; the server never
        issues a value that needs quoting. Only the optional whitespace of the
        header's grammar goes: spaces and tabs around the name, the ``=`` and the
        value (``session = VALUE``), as the standard library's and werkzeug's
        parsers read it.
        """
        header: str | None = environ.get("HTTP_COOKIE")
        if header and self.name in header:
            # cookie_value(header, self.name), inlined: every request with a cookie reads it.
            for pair in header.split(";"):
                name, sep, value = pair.strip(" \t").partition("=")
                # The exact name first: the usual header has no space before its "=".
                if sep and (name == self.name or name.rstrip(" \t") == self.name):
                    return value.lstrip(" \t")
        if self.old_name is None or not header:
            return None
        return cookie_value(header, self.old_name)

    def dump(self, environ: WSGIEnvironment, value: str, max_age: int | None) -> str:
        """A Set-Cookie header value; ``max_age=None`` makes a browser-session cookie."""
        path = self.path or environ.get("SCRIPT_NAME") or "/"
        secure = self.secure
        if secure is None:  # follows the request's scheme
            secure = environ.get("wsgi.url_scheme") == "https"
        # A Max-Age comes with an Expires date (as werkzeug writes it: now + Max-Age).
        expires = None if max_age is None else int(time.time()) + max_age
        # Nothing left once those characters are deleted: the value goes out as it
        # is. A C loop over the bytes, half a regex match's cost (every cookie sent).
        if not value.isascii() or value.encode("ascii").translate(None, _UNQUOTED):
            return self._dump(value, max_age, expires, path, secure)
        # The attributes depend on the path, the scheme and the Max-Age, and its
        # Expires on the second: werkzeug spells each set once, and every response
        # that second reuses it (formatting the date is most of a permanent cookie's cost).
        key = (path, secure, max_age, expires)
        attributes = self._attributes.get(key)
        if attributes is None:
            if len(self._attributes) >= _ATTRIBUTE_CACHE_SIZE:
                self._attributes.clear()
            attributes = self._dump("", max_age, expires, path, secure)[len(self.name) + 1 :]
            self._attributes[key] = attributes
        return f"{self.name}={value}{attributes}"

    def _dump(
        self, value: str, max_age: int | None, expires: int | None, path: str, secure: bool
    ) -> str:
        return dump_cookie(
            self.name,
            value,
            max_age=max_age,
            expires=expires,
            path=path,
            domain=self.domain,
            secure=secure,
            httponly=self.httponly,
            samesite=self.samesite,
            partitioned=self.partitioned,
            max_size=0,  # the cookie backend enforces its own limit with a clear error
        )

    def expire(self, environ: WSGIEnvironment) -> str:
        """A Set-Cookie header value deleting the cookie, with the same attributes."""
        return self.dump(environ, "", max_age=0)

    def expire_other(
        self, environ: WSGIEnvironment, name: str, path: str | None, domain: str | None
    ) -> str | None:
        """A Set-Cookie deleting another system's cookie; ``None`` if ours replaces it already.

        Ours replaces it when the browser keeps both under one name, path and
        domain (``path`` ``None``: the mount point, as ours).
        """
        mount = environ.get("SCRIPT_NAME") or "/"
        if (name, path or mount, domain) == (self.name, self.path or mount, self.domain):
            return None
        return dump_cookie(
            name, "", max_age=0, expires=0, path=path or mount, domain=domain, max_size=0
        )


def cookie_value(header: str, wanted: str) -> str | None:
    """The raw value of the first cookie named ``wanted`` in a ``Cookie`` header, or ``None``.

    Raw as :meth:`CookiePolicy.read` reads it: only the header's optional
    whitespace around the name, the ``=`` and the value is dropped.
    """
    if wanted not in header:
        return None
    for pair in header.split(";"):
        name, sep, value = pair.strip(" \t").partition("=")
        if sep and (name == wanted or name.rstrip(" \t") == wanted):
            return value.lstrip(" \t")
    return None


class KeyRing:
    """The current secret (signs) and fallback secrets (still verify).

    Signing is HMAC-SHA256 in itsdangerous' format (:class:`CookieSigner`); the
    per-purpose key derivation is done once here rather than on every request.
    """

    def __init__(
        self, secret_key: str | bytes, fallback_keys: Sequence[str | bytes] | None = ()
    ) -> None:
        if not isinstance(secret_key, (str, bytes)):
            raise ConfigurationError(
                "{secret_key} must be str or bytes, not {kind}",
                "secret_key",
                kind=type(secret_key).__name__,
            )
        if not secret_key:
            raise ConfigurationError(
                "{secret_key} is empty: sessions cannot be signed", "secret_key"
            )
        fallback_keys = fallback_keys or ()
        if isinstance(fallback_keys, (str, bytes)):
            raise ConfigurationError(
                "{fallback_keys} must be a list of keys, not one string", "fallback_keys"
            )
        self.secret_key = _as_bytes(secret_key)
        if len(self.secret_key) < MIN_SECRET_BYTES:
            log.warning(
                "secret_key is only %d bytes; use at least %d random bytes "
                '(python -c "import secrets; print(secrets.token_hex(32))")',
                len(self.secret_key),
                MIN_SECRET_BYTES,
            )
        self.fallback_keys = [_as_bytes(key) for key in fallback_keys if key]

    def signer(self, purpose: str) -> CookieSigner:
        return CookieSigner(self, purpose)

    def derive(self, purpose: str) -> list[bytes]:
        """Keys for ``purpose``, oldest first, current last (itsdangerous' order)."""
        return [
            hmac.new(key, purpose.encode(), hashlib.sha256).digest()
            for key in [*reversed(self.fallback_keys), self.secret_key]
        ]


class CookieSigner:
    """Signs and verifies cookie values for one purpose.

    The text is itsdangerous' ``Signer`` with HMAC-SHA256, ``key_derivation="none"``
    and ``sep="."``: ``value + "." + base64url(HMAC(key, value))`` without padding
    (tests/test_properties.py holds both to the same text). Verifying, done on
    every request that reads its session, recomputes that text and compares it
    in constant time: itsdangerous would spend twice as long around the same
    HMAC (a base64 decode, an ``hmac.HMAC`` object, key handling per call).
    """

    __slots__ = ("_current", "_newest_first")

    def __init__(self, keys: KeyRing, purpose: str) -> None:
        # One keyed HMAC per key, copied for each message: hmac.digest() and
        # hmac.new() set OpenSSL's HMAC up anew on every call (fetching the
        # algorithm, hashing the padded key), a third more instructions than a copy.
        self._newest_first = [
            hmac.new(key, digestmod="sha256") for key in keys.derive(purpose)[::-1]
        ]
        self._current = self._newest_first[0]

    def sign(self, value: str) -> str:
        mac = self._current.copy()
        mac.update(value.encode("utf-8"))
        return f"{value}.{encode_canonical(mac.digest())}"

    def unsign(self, signed: str) -> tuple[str, bool] | None:
        """``(value, signed_with_current_key)``, or ``None`` if it does not verify.

        Only the exact text :meth:`sign` produced verifies: the signature is
        compared as text with the canonical spelling of the expected HMAC, so
        no other spelling of the same bytes (see :func:`decode_canonical`) can pass.
        """
        value, sep, signature = signed.rpartition(".")
        if not sep or not signed.isascii():
            return None
        return self.verify(value, signature)

    def verify(self, value: str, signature: str) -> tuple[str, bool] | None:
        """:meth:`unsign` of ``value + "." + signature``, split already; both ASCII."""
        message = value.encode("ascii")
        for keyed in self._newest_first:
            mac = keyed.copy()
            mac.update(message)
            if hmac.compare_digest(encode_canonical(mac.digest()), signature):
                return value, keyed is self._current
        return None


def encode_canonical(data: bytes) -> str:
    """``data`` in unpadded URL-safe base64, as itsdangerous spells it (its ``base64_encode``)."""
    # binascii directly: base64.urlsafe_b64encode is two Python frames on every request.
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode()


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def decode_canonical(text: str) -> bytes | None:
    """The bytes ``text`` spells in unpadded URL-safe base64, or ``None``.

    ``None`` unless ``text`` is exactly what itsdangerous' ``base64_encode``
    makes of those bytes. A base64 decoder alone is lenient: it drops
    characters outside the alphabet (junk, NUL, non-ASCII), accepts ``=``
    padding and ``+``/``/`` for ``-``/``_``, and ignores the unused low bits
    of the last character, so one value would have many spellings. Every
    base64 text in a cookie goes through here, so only the spelling the server
    issued opens a session. (binascii directly: the base64 module's wrappers
    cost more than the decoding itself.)
    """
    if not text.isascii():
        return None
    spelled = text.encode("ascii")
    try:
        data = binascii.a2b_base64(spelled.translate(_FROM_URLSAFE) + b"=" * (-len(spelled) % 4))
    except binascii.Error:
        return None
    if binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_TO_URLSAFE) != spelled:
        return None
    return data


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key
