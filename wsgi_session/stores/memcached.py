"""Session records in memcached: one server, or a cluster spread by key.

pymemcache's base ``Client`` speaks the protocol; the pool and the choice of
server are here because pymemcache's own do not fit: ``PooledClient`` hands out
connections a restarted server has closed (the first requests after a restart
fail) and raises past its size; ``HashClient`` keeps node health in unlocked
dicts (``KeyError``/``ValueError`` when threads see a node fail together) and
hashes with a pure-Python murmur3 (~12 µs per node per call).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from pymemcache.client.base import Client
from pymemcache.exceptions import (
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownError,
)

from wsgi_session.errors import (
    ConfigurationError,
    SessionTooLarge,
    StoreUnavailable,
    StoreWriteFailed,
    check_seconds,
)
from wsgi_session.stores.base import Version

__all__ = ["MemcachedStore"]

log = logging.getLogger("wsgi_session")

DEFAULT_PORT = 11211
MAX_KEY_LENGTH = 250
MAX_RELATIVE_TTL = 30 * 24 * 3600
"""memcached reads a larger expiry as a Unix timestamp, not as seconds from now."""

_MAX_PREFIX_LENGTH = MAX_KEY_LENGTH - 64  # leaves room for a hex SHA-256 digest
_KEY = re.compile(r"[!-~]+")  # printable ASCII, no whitespace: what memcached accepts
_SESSION_KEY = re.compile(rb"[0-9a-f]{64}")  # a record's key (a SHA-256), not an index's
_ADDRESS = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]/]+))(?::(?P<port>\d+))?")

# The connection is gone (or the reply unreadable): the server is unreachable.
_UNREACHABLE = (OSError, MemcacheUnexpectedCloseError, MemcacheUnknownError)
# What a pooled connection raises when the server closed it while it sat idle.
_PEER_CLOSED = (
    MemcacheUnexpectedCloseError,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)

Address = tuple[str, int]


class _Server:
    """One memcached server and this process's idle connections to it."""

    def __init__(self, address: Address, options: dict[str, Any], max_idle: int) -> None:
        self.address = address
        self.name = _format_address(address)
        self.down_until = 0.0
        self._options = options
        self._max_idle = max_idle
        self._idle: deque[Any] = deque()
        self._hash_prefix = self.name.encode() + b"\0"

    def score(self, key: bytes) -> int:
        """Rendezvous weight: the live server with the highest one owns ``key``."""
        digest = hashlib.blake2b(self._hash_prefix + key, digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def close(self) -> None:
        """Close the idle connections; connections in use close when returned."""
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:  # another thread took the last one
                return

    def call(self, method: str, *args: Any) -> Any:
        """Run ``client.method(*args)`` on a pooled connection, or a new one."""
        try:
            client = self._idle.pop()
            pooled = True
        except IndexError:
            client = Client(self.address, **self._options)
            pooled = False
        while True:
            try:
                result = getattr(client, method)(*args)
                break
            except BaseException as exc:
                # After an error the protocol position on this socket is unknown.
                client.close()
                if not (pooled and isinstance(exc, _PEER_CLOSED)):
                    raise
                # Closed while idle (restart, idle timeout). Running the command
                # again is safe: a write that did land answers NOT_STORED/EXISTS
                # the second time, which is reported as a conflict, never success.
                client = Client(self.address, **self._options)
                pooled = False
        # Past the limit, connections opened under load are closed, not kept;
        # two threads racing here may keep one extra, which is harmless.
        if len(self._idle) < self._max_idle:
            self._idle.append(client)
        else:
            client.close()
        return result


class MemcachedStore:
    """Session records in memcached.

    ``servers`` is ``"host:port"``, a comma-separated list of them, or a
    sequence of ``"host:port"`` strings or ``(host, port)`` tuples. With several
    servers each key lives on one of them (rendezvous hashing). A server that
    fails is skipped for ``dead_timeout`` seconds: its keys move to the others
    (those sessions start over) and requests keep working; then it is tried again.

    ``connect_timeout`` and ``timeout`` bound each connect and each reply, in
    seconds. Up to ``max_pool_size`` idle connections per server are kept for
    reuse; under more load more are opened, and closed when done.

    Every write waits for the server's answer. Connections open on first use,
    separately in each process. Thread-safe.
    """

    def __init__(
        self,
        servers: str | Sequence[str] | Sequence[Address],
        *,
        key_prefix: str = "",
        connect_timeout: float = 0.5,
        timeout: float = 0.5,
        dead_timeout: float = 10.0,
        max_pool_size: int = 16,
    ) -> None:
        self.addresses = _parse_servers(servers)
        self.key_prefix = _check_prefix(key_prefix)
        for setting, seconds in (
            ("connect_timeout", connect_timeout),
            ("timeout", timeout),
            ("dead_timeout", dead_timeout),
        ):
            check_seconds(setting, seconds, minimum=0, whole=False, owner="MemcachedStore ")
        if (
            isinstance(max_pool_size, bool)
            or not isinstance(max_pool_size, int)
            or max_pool_size < 1
        ):
            raise ConfigurationError(
                "MemcachedStore {max_pool_size} must be a whole number of at least 1, "
                "got {value!r}",
                "max_pool_size",
                value=max_pool_size,
            )
        self._dead_timeout = dead_timeout
        self._max_pool_size = max_pool_size
        self._client_options: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "timeout": timeout,
            # Nagle's algorithm holds a small request back while an earlier
            # one is unacknowledged: behind a write the server does not answer,
            # the next request waits for its delayed ACK (~40 ms).
            "no_delay": True,
            # pymemcache's default, noreply, reports writes it never heard back about.
            "default_noreply": False,
        }
        self._prefix = self.key_prefix.encode("ascii")
        self._longest_key = MAX_KEY_LENGTH - len(self.key_prefix)
        self._servers = self._new_servers()
        self._cluster = len(self._servers) > 1
        _IN_THIS_PROCESS.add(self)

    def load(self, key: str) -> tuple[bytes, Version] | None:
        """Return ``(data, cas_token)`` for a live record, or ``None``."""
        full_key = self._key(key)
        data, token = self._call(full_key, None, "gets", full_key)
        if data is None:
            return None
        return data, token

    def save(self, key: str, data: bytes, ttl: int, version: Version | None = None) -> bool:
        """Create (``add``) or compare-and-set (``cas``) the record.

        Returns ``False`` when the record exists (create), or changed or
        vanished (compare-and-set).
        """
        full_key = self._key(key)
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        expire = _expiry(ttl)
        if version is None:
            stored = self._call(full_key, data, "add", full_key, data, expire)
        else:
            if not (isinstance(version, bytes) and version.isdigit()):
                raise ValueError(f"version must be a token load() returned, got {version!r}")
            stored = self._call(full_key, data, "cas", full_key, data, version, expire)
        # add answers True/False; cas answers True, False (EXISTS) or None (NOT_FOUND).
        return stored is True

    def delete(self, key: str) -> None:
        """Remove the record; a missing record is not an error."""
        full_key = self._key(key)
        self._call(full_key, None, "delete", full_key)

    # -- the OwnerIndex protocol: one compare-and-set index record per owner ----------

    def index_owner(self, owner: str, key: str, until: int) -> None:
        """Add ``key`` to ``owner``'s index record, dropping entries past their time."""

        def add(entries: dict[str, int]) -> None:
            entries[key] = until

        self._change_index(owner, add)

    def unindex_owner(self, owner: str, key: str) -> None:
        def remove(entries: dict[str, int]) -> None:
            entries.pop(key, None)

        self._change_index(owner, remove)

    def owned(self, owner: str) -> list[str]:
        full_key = self._index_key(owner)
        data, _ = self._call(full_key, None, "gets", full_key)
        return list(_live_entries(data))

    # -- the RecordScan protocol -------------------------------------------------------

    def records(self) -> Iterator[bytes]:
        """Each record's data, listed by memcached's LRU crawler (``lru_crawler metadump``).

        The crawler walks every server's items without blocking it; a record
        written while it runs may or may not be listed.
        """
        for dump in self._on_each_server("raw_command", b"lru_crawler metadump all", b"END\r\n"):
            for line in dump.split(b"\n"):
                if not line.startswith(b"key="):
                    continue
                key = unquote_to_bytes(line.split(b" ", 1)[0][len(b"key=") :])
                if not key.startswith(self._prefix):
                    continue
                key = key[len(self._prefix) :]
                if _SESSION_KEY.fullmatch(key):
                    found = self.load(key.decode("ascii"))
                    if found is not None:
                        yield found[0]

    def record_count(self) -> int | None:
        """Every server's items (owner index entries and other keys included)."""
        return self.figures()["items"]

    def figures(self) -> dict[str, int]:
        """Items, bytes and the memory limit, added up over the servers."""
        totals = {"items": 0, "bytes": 0, "memory limit bytes": 0}
        for stats in self._on_each_server("stats"):
            for name, field in (
                ("items", b"curr_items"),
                ("bytes", b"bytes"),
                ("memory limit bytes", b"limit_maxbytes"),
            ):
                totals[name] += int(stats.get(field, stats.get(field.decode(), 0)))
        return totals

    def _on_each_server(self, method: str, *args: Any) -> list[Any]:
        """``method(*args)`` on every server; :class:`StoreUnavailable` if one cannot answer."""
        answers = []
        for server in self._servers:
            try:
                answers.append(server.call(method, *args))
            except (*_UNREACHABLE, MemcacheServerError) as exc:
                raise StoreUnavailable(
                    f"memcached server {server.name} did not answer {method}: {exc!r}"
                ) from exc
        return answers

    def _index_key(self, owner: str) -> bytes:
        # "o:" and 62 hex digits of a hash of the owner token: as long as a
        # session key, so any key_prefix that fits one fits this too.
        digest = hashlib.sha256(owner.encode("ascii")).hexdigest()
        return self._key("o:" + digest[:62])

    def _change_index(self, owner: str, change: Callable[[dict[str, int]], None]) -> None:
        """Read, change and compare-and-set ``owner``'s index record, retrying on conflicts."""
        full_key = self._index_key(owner)
        for _ in range(_INDEX_ATTEMPTS):
            data, token = self._call(full_key, None, "gets", full_key)
            entries = _live_entries(data)
            change(entries)
            if not entries and data is None:
                return
            value = b"".join(
                b"%s %d\n" % (key.encode("ascii"), until) for key, until in entries.items()
            )
            # The record lives as long as its last entry (1 s when it is empty).
            expire = _expiry(max(1, max(entries.values(), default=0) - int(time.time())))
            if token is None:
                stored = self._call(full_key, value, "add", full_key, value, expire)
            else:
                stored = self._call(full_key, value, "cas", full_key, value, token, expire)
            if stored is True:
                return
        raise StoreWriteFailed(
            f"the owner index record kept conflicting after {_INDEX_ATTEMPTS} tries"
        )

    def close(self) -> None:
        """Close this process's idle connections; the next call opens new ones."""
        for server in self._servers:
            server.close()

    def _key(self, key: str) -> bytes:
        encoded = key.encode("ascii", "replace")
        if encoded.isalnum() and len(encoded) <= self._longest_key:
            # The usual key, a hex digest: nothing to check beyond these C calls.
            # bytes.isalnum costs a third of str.isalnum (no Unicode tables); a
            # non-ASCII character became "?", which fails it.
            return self._prefix + encoded
        full_key = self.key_prefix + key
        if not _KEY.fullmatch(full_key):
            raise ValueError(
                f"memcached keys must be printable ASCII without whitespace, got {full_key!r}"
            )
        if len(full_key) > MAX_KEY_LENGTH:
            raise ValueError(
                f"memcached key is {len(full_key)} bytes (key_prefix included), "
                f"the limit is {MAX_KEY_LENGTH}"
            )
        return full_key.encode("ascii")

    def _new_servers(self) -> tuple[_Server, ...]:
        return tuple(
            _Server(address, self._client_options, self._max_pool_size)
            for address in self.addresses
        )

    def _forked(self) -> None:
        """In a forked child: drop the parent's connections, open this process's own."""
        # The child must not share the parent's sockets: the replies of the two
        # processes would interleave. Closing the child's copies leaves the
        # parent's connections open.
        for inherited in self._servers:
            inherited.close()
        self._servers = self._new_servers()

    def _route(self, key: bytes) -> _Server:
        servers = self._servers
        now = time.monotonic()
        live = [server for server in servers if server.down_until <= now]
        if not live:
            names = ", ".join(server.name for server in servers)
            raise StoreUnavailable(f"every memcached server is down: {names}")
        return max(live, key=lambda server: server.score(key))

    def _call(self, key: bytes, data: bytes | None, method: str, *args: Any) -> Any:
        """Run ``client.method(*args)`` on the server owning ``key``; ``data`` marks a write.

        In a cluster, a server that cannot be reached is skipped and the call
        goes to the key's next server at once, so the request still succeeds
        (that session starts over); only when every server is down does it fail.
        """
        while True:
            server = self._route(key) if self._cluster else self._servers[0]
            try:
                return server.call(method, *args)
            except _UNREACHABLE as exc:
                if not self._cluster:
                    raise StoreUnavailable(
                        f"memcached server {server.name} is unreachable: {exc!r}"
                    ) from exc
                server.down_until = time.monotonic() + self._dead_timeout
                log.error(
                    "memcached server %s is unreachable (%r); its sessions go to the other "
                    "servers for %s s",
                    server.name,
                    exc,
                    self._dead_timeout,
                )
            except MemcacheServerError as exc:
                raise self._refused(server, exc, data) from exc

    @staticmethod
    def _refused(server: _Server, exc: MemcacheServerError, data: bytes | None) -> Exception:
        """The error for a server that answered with an error."""
        if data is None:
            return StoreUnavailable(f"memcached server {server.name} failed: {exc}")
        if "too large" in str(exc):
            return SessionTooLarge(
                f"session record of {len(data)} bytes is over the item size limit "
                f"of memcached server {server.name} (memcached -I, 1 MB by default)"
            )
        return StoreWriteFailed(
            f"memcached server {server.name} refused a {len(data)} byte record: {exc}"
        )

    def __repr__(self) -> str:
        names = [_format_address(address) for address in self.addresses]
        return f"MemcachedStore({names!r}, key_prefix={self.key_prefix!r})"


_INDEX_ATTEMPTS = 100  # as many as the session writer's: one retry per concurrent login


def _live_entries(data: bytes | None) -> dict[str, int]:
    """The entries of an owner index record not yet past their time: ``{key: until}``."""
    now = time.time()
    entries: dict[str, int] = {}
    for line in (data or b"").splitlines():
        key, _, until = line.partition(b" ")
        if until.isdigit() and int(until) > now:
            entries[key.decode("ascii")] = int(until)
    return entries


# The stores of this process, told when it forks (instead of asking os.getpid() every call).
_IN_THIS_PROCESS: weakref.WeakSet[MemcachedStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_IN_THIS_PROCESS):
        store._forked()


if hasattr(os, "register_at_fork"):  # no fork, nothing to do, on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _expiry(ttl: int) -> int:
    """The memcached expiry for a record that lives ``ttl`` seconds from now."""
    if ttl < 1:
        # memcached reads 0 as "never expires" and negative as "already expired".
        raise ValueError(f"ttl must be at least 1 second, got {ttl!r}")
    if ttl > MAX_RELATIVE_TTL:
        return int(time.time()) + ttl
    return ttl


def _format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_servers(servers: str | Sequence[str] | Sequence[Address]) -> tuple[Address, ...]:
    specs: Sequence[str | Address] = servers.split(",") if isinstance(servers, str) else servers
    addresses = tuple(_parse_address(spec) for spec in specs)
    if not addresses:
        raise ConfigurationError(
            "MemcachedStore {servers} is empty: give at least one host:port", "servers"
        )
    for address in addresses:
        if addresses.count(address) > 1:
            raise ConfigurationError(
                "MemcachedStore {servers} lists {address} more than once",
                "servers",
                address=_format_address(address),
            )
    return addresses


def _parse_address(spec: object) -> Address:
    host, port = "", 0
    if isinstance(spec, str):
        match = _ADDRESS.fullmatch(spec.strip())
        if match:
            host, port = match["ipv6"] or match["host"], int(match["port"] or DEFAULT_PORT)
    elif isinstance(spec, tuple) and len(spec) == 2:
        host, port = spec if isinstance(spec[0], str) and isinstance(spec[1], int) else ("", 0)
    if not host or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigurationError(
            "MemcachedStore {servers}: {spec!r} is not a host:port address "
            "(port 1-65535, default {port})",
            "servers",
            spec=spec,
            port=DEFAULT_PORT,
        )
    return host, port


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or (prefix and not _KEY.fullmatch(prefix)):
        raise ConfigurationError(
            "MemcachedStore {key_prefix} must be printable ASCII without whitespace, got {value!r}",
            "key_prefix",
            value=prefix,
        )
    if len(prefix) > _MAX_PREFIX_LENGTH:
        raise ConfigurationError(
            "MemcachedStore {key_prefix} is {length} characters, the limit is {limit} "
            "(memcached keys are at most {key_limit} bytes)",
            "key_prefix",
            length=len(prefix),
            limit=_MAX_PREFIX_LENGTH,
            key_limit=MAX_KEY_LENGTH,
        )
    return prefix
