"""Store URLs: ``sqlite:///path.db``, ``memcached://host:port``, ``memory://``, ``cookie://``.

Each scheme is one builder function and its query options in :data:`_STORES`;
:func:`parse_store_url` is the whole parse.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from wsgi_session.backends import BackendFactory, CookieStore
from wsgi_session.config.values import Flag, Kind, Number, Text
from wsgi_session.errors import ConfigurationError
from wsgi_session.stores.base import BadOption, Store, read_query

AnyStore = Store | BackendFactory
DEFAULT_STORE = "sqlite://"
STORE_URLS = (
    "sqlite:// (the default file), sqlite:///absolute/path.db, "
    "memcached://host:port[,host:port...][?key_prefix=&timeout=&connect_timeout=&"
    "dead_timeout=&max_pool_size=], memory://, cookie://[?encrypt=&compress=&max_size=], "
    "redis://[[user]:password@]host[:port][/db], rediss:// (TLS), unix:///path.sock, "
    "redis+sentinel://[[user]:password@]host:port[,...]/service[/db], "
    "redis+cluster://[[user]:password@]host:port[,...] (Redis options: docs/redis.md)"
)
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


def store_from_url(url: str) -> AnyStore:
    """The store a URL such as ``sqlite:///var/lib/app/sessions.db`` describes."""
    try:
        return parse_store_url(url.strip())
    except ValueError as exc:
        raise ConfigurationError(
            "store URL {url}: {problem}; allowed: {allowed}",
            url=repr(without_password(url)),
            problem=exc,
            allowed=STORE_URLS,
        ) from None


def parse_store_url(text: str) -> AnyStore:
    """The store ``text`` describes; ``ValueError`` says what is wrong with it.

    The user and password are taken out before any parser sees the URL, so
    that no message of one (a URL parser quotes what it cannot read) can hold
    a piece of the password: every problem is worded from the rest.
    """
    located, credentials = split_credentials(text)
    try:
        url = urlsplit(located)
    except ValueError:
        raise ValueError(
            "not a URL: '[' and ']' may only enclose an IPv6 address (percent-encode them "
            "elsewhere: %5B, %5D)"
        ) from None
    if url.scheme.lower() in REDIS_SCHEMES:
        return _redis(located, credentials)
    builder = _STORES.get(url.scheme.lower())
    if builder is None:
        raise ValueError(f"unknown store {url.scheme!r}")
    if credentials is not None:
        raise ValueError("user names and passwords are not supported in store URLs")
    options = _query(url, builder.options)
    try:
        return builder.build(url, options)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None


Credentials = tuple[str, str | None]
"""A store URL's user name and password (``None``: none given), percent-decoded."""


def split_credentials(url: str) -> tuple[str, Credentials | None]:
    """``url`` without its user and password, and them (``None`` if it has neither).

    Everything between ``//`` and the last ``@`` is the user and password,
    whatever it holds (:func:`without_password` masks the same part). Written
    as is, a ``/``, ``?`` or ``#`` would end the host for a URL parser, so
    such a URL is refused, without showing where the character is.
    """
    scheme, slashes, rest = url.partition("//")
    userinfo, at, hosts = rest.rpartition("@")
    if not (slashes and at):
        return url, None
    if any(character in userinfo for character in "/?#"):
        raise ValueError(
            "has '/', '?', '#' or '@' where a user name, password or option belongs: "
            "percent-encode them there (%2F, %3F, %23, %40)"
        )
    user, colon, password = userinfo.partition(":")
    return f"{scheme}//{hosts}", (unquote(user), unquote(password) if colon else None)


def without_password(url: str) -> str:
    """``url`` with any password masked, fit to show in an error.

    Everything between ``//`` and the last ``@`` is the user and password,
    whatever it holds: a password with a ``/``, ``?`` or ``#`` in it is not
    where a URL parser looks for one, and must still not be shown.
    """
    scheme, slashes, rest = url.partition("//")
    userinfo, at, hosts = rest.rpartition("@")
    if not (slashes and at):
        return url
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:***" if colon and "/" not in user else "***"
    return f"{scheme}//{shown}@{hosts}"


class StoreURL(Kind):
    """The ``STORE`` setting's kind."""

    allowed = STORE_URLS

    def parse(self, text: str) -> AnyStore:
        return parse_store_url(text)


@dataclass(frozen=True)
class _StoreBuilder:
    build: Callable[[SplitResult, dict[str, Any]], AnyStore]
    options: Mapping[str, Kind]


def _query(url: SplitResult, kinds: Mapping[str, Kind]) -> dict[str, Any]:
    """The URL's query options, parsed by ``kinds``; ``ValueError`` names a bad one."""
    if url.fragment:
        raise ValueError("a store URL has no #fragment")
    try:
        return read_query(url.query, {name: kind.parse for name, kind in kinds.items()})
    except BadOption as bad:
        allowed = kinds[bad.name].allowed
        raise ValueError(f"option {bad.name}={bad.text!r} must be {allowed}") from None
    except ValueError as exc:
        raise ValueError(f"{exc} in a {url.scheme}:// URL") from None


def _no_location(url: SplitResult, form: str) -> None:
    if url.netloc or url.path:
        raise ValueError(f"{url.scheme}:// takes no host or path; write {form}")


# A server-side store's module is imported by its scheme's builder only: each may
# need a client library the application does not use.


def _sqlite(url: SplitResult, options: dict[str, Any]) -> AnyStore:
    from wsgi_session.stores.sqlite import SQLiteStore

    if url.netloc:
        raise ValueError(
            "a sqlite URL has no host: write sqlite:///absolute/path.db (three slashes) "
            "or sqlite:// for the default file"
        )
    path = unquote(url.path)
    if path and not path.startswith("/"):
        raise ValueError("the sqlite path must be absolute: sqlite:///absolute/path.db")
    if path.endswith("/"):
        raise ValueError("the sqlite path must name a file")
    # Four slashes, as SQLAlchemy spells absolute paths, mean the same file as three.
    return SQLiteStore("/" + path.lstrip("/") if path else None, **options)


def _memcached(url: SplitResult, options: dict[str, Any]) -> AnyStore:
    from wsgi_session.stores.memcached import MemcachedStore

    if not url.netloc or url.path:
        raise ValueError("write memcached://host:port or memcached://host1:port,host2:port")
    return MemcachedStore(unquote(url.netloc), **options)


def _memory(url: SplitResult, options: dict[str, Any]) -> AnyStore:
    from wsgi_session.stores.memory import MemoryStore

    _no_location(url, "memory://")
    return MemoryStore()


def _redis(located: str, credentials: Credentials | None) -> AnyStore:
    # The Redis store reads its own URLs: their forms (Sentinel, Cluster, TLS
    # options) are its business, and redis-py is needed only by who uses them.
    # The credentials go beside the URL, never through its parser.
    try:
        from wsgi_session.stores.redis import RedisStore
    except ImportError:
        raise ValueError("needs redis-py: pip install 'wsgi-session[redis]'") from None
    user, password = credentials if credentials is not None else (None, None)
    try:
        return RedisStore.from_url(located, username=user or None, password=password)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None


def _cookie(url: SplitResult, options: dict[str, Any]) -> AnyStore:
    _no_location(url, "cookie://?encrypt=true")
    return CookieStore(**options)


_SECONDS = Number(float)
_STORES = {
    "sqlite": _StoreBuilder(_sqlite, {"table": Text(), "timeout": _SECONDS}),
    "memcached": _StoreBuilder(
        _memcached,
        {
            "key_prefix": Text(),
            "connect_timeout": _SECONDS,
            "timeout": _SECONDS,
            "dead_timeout": _SECONDS,
            "max_pool_size": Number(int),
        },
    ),
    "memory": _StoreBuilder(_memory, {}),
    "cookie": _StoreBuilder(
        _cookie, {"compress": Flag(), "encrypt": Flag(), "max_size": Number(int)}
    ),
}
