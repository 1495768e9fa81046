"""Who a session belongs to, as its record keeps it: a keyed hash, never the owner in clear.

A session's *owner* is the value of one key of its data (``_user_id`` for
Flask-Login, ``_auth_user_id`` for Django auth). The record's header keeps an
HMAC of it, under a key derived from the secret for this purpose alone, so
that a store's owner index can find a user's sessions while whoever reads the
store learns nothing about who they belong to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from typing import Any, NamedTuple

HASH_PURPOSE = "wsgi_session.owner"
MAX_AGENT = 200  # characters of a user agent kept: enough to name a browser
NO_CLIENT = ""
CACHED_DIGESTS = 4096  # owners whose hash a process remembers: a write then computes none


class Owner(NamedTuple):
    """The owner part of a record's header."""

    digest: str  # keyed hash of the owner's id (hex)
    indexed_until: int  # the store's owner index lists the session until then (POSIX seconds)
    client: str = NO_CLIENT  # user agent and coarse address recorded at login (encode_client)


class OwnerHasher:
    """Keyed hashes of owner ids: the current key's for writing, every key's for finding."""

    def __init__(self, keys: list[bytes]) -> None:
        """``keys``: derived for :data:`HASH_PURPOSE`, oldest first, current last."""
        self._keys = keys
        self._cache: dict[str, str] = {}

    def digest(self, owner: object) -> str:
        """The hash a record written now keeps for ``owner``.

        Asked on every write of an owned session: remembered, so that only a
        process's first write for a user pays for the HMAC.
        """
        text = str(owner)
        cached = self._cache.get(text)
        if cached is None:
            if len(self._cache) >= CACHED_DIGESTS:
                self._cache.clear()
            cached = self._cache[text] = _digest(self._keys[-1], text)
        return cached

    def digests(self, owner: object) -> list[str]:
        """The hashes ``owner``'s records may carry: under the current and fallback keys."""
        return [_digest(key, owner) for key in reversed(self._keys)]


def _digest(key: bytes, owner: object) -> str:
    return hmac.new(key, str(owner).encode("utf-8"), hashlib.sha256).hexdigest()


def coarse_address(address: str) -> str:
    """The network of ``address``: a /24 for IPv4, a /48 for IPv6; ``""`` if unreadable.

    Enough to tell "home" from "another country", not enough to find a person.
    """
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return ""
    prefix = 24 if parsed.version == 4 else 48
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))


def encode_client(user_agent: str, address: str) -> str:
    """One header field (no spaces) holding a user agent and a coarse address."""
    text = json.dumps([user_agent[:MAX_AGENT], coarse_address(address)], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


def decode_client(field: str) -> tuple[str, str]:
    """``(user agent, coarse address)`` from :func:`encode_client`; empty strings if none."""
    if not field:
        return "", ""
    try:
        value: Any = json.loads(base64.urlsafe_b64decode(field.encode("ascii")))
        agent, address = value
        return str(agent), str(address)
    except (ValueError, TypeError):
        return "", ""
