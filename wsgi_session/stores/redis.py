"""Session records in Redis: one server, a Sentinel-watched master, or a Cluster.

A record is stored under ``key_prefix + key`` as one string value: an 8-byte
random *version token* followed by the data. Loading is one ``GET``. Creating
is one ``SET key value NX EX ttl``. A versioned save is one small Lua script
(``EVALSHA``) that replaces the value only while its first 8 bytes are still
the token ``load`` returned, setting the new token and the TTL in the same
command. A write therefore costs one round trip, as a raw ``SET`` does.

With ``wait_for_replicas=N`` every write is followed by ``WAIT N ms`` on the
same connection, in the same round trip (a pipeline), and a write fewer
replicas confirmed in time raises :class:`StoreWriteFailed`.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar, cast
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from wsgi_session.errors import (
    ConfigurationError,
    StoreUnavailable,
    StoreWriteFailed,
    check_seconds,
)
from wsgi_session.stores.base import (
    ADDRESS,
    BadOption,
    Version,
    check_record,
    credentials,
    parse_flag,
    read_query,
)

__all__ = ["SCHEMES", "RedisStore"]

T = TypeVar("T")

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
TOKEN_BYTES = 8
SCAN_BATCH = 500  # keys a SCAN step asks for, and values a pipeline of GETs fetches
"""Length of the version token each record starts with."""

# redis-py annotates these in some releases and not in others: seen through these
# signatures, the type check does not depend on which release is installed.
_cluster_node = cast("Callable[[str, int], ClusterNode]", ClusterNode)
_sentinel = cast("Callable[..., Sentinel]", Sentinel)

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
"""The URL schemes :class:`RedisStore` reads."""

# KEYS[1]: the key; ARGV: the expected token, the new value (new token + data), the TTL.
# GETRANGE of a missing key is "": a vanished record is a conflict, never recreated.
_COMPARE_AND_SET = """
if redis.call('GETRANGE', KEYS[1], 0, 7) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""  # 0-7: the TOKEN_BYTES bytes of the token
# The owner index: a sorted set per owner, scored by when each entry may go. The
# set expires with its last entry, so an owner who never comes back leaves nothing.
# {set}: the owner's set; {now}, {until}, {key}: now, the entry's until, the record key.
_ADD_ENTRY = """
redis.call('ZREMRANGEBYSCORE', {set}, '-inf', {now})
redis.call('ZADD', {set}, {until}, {key})
local last = redis.call('ZRANGE', {set}, -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', {set}, math.floor(tonumber(last[2])) + 1)
return 1
"""
# KEYS[1]: the owner's set; ARGV: now, the entry's until, the record key.
_INDEX_OWNER = _ADD_ENTRY.format(set="KEYS[1]", now="ARGV[1]", until="ARGV[2]", key="ARGV[3]")
# IndexedWrites: a record's create (ARGV[1] "0") or compare-and-set (ARGV[1] "1",
# against the token ARGV[2]), then, where it took, its entry in its owner's set, in
# one round trip. KEYS[1]: the record, KEYS[2]: the owner's set; ARGV[3..5]: the new
# value, the TTL, now; ARGV[6], ARGV[7]: the entry's until, the record key.
_SAVE_INDEXED = """
if ARGV[1] == '0' then
  if not redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[4]) then return 0 end
elseif redis.call('GETRANGE', KEYS[1], 0, 7) == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
else
  return 0
end
""" + _ADD_ENTRY.format(set="KEYS[2]", now="ARGV[5]", until="ARGV[6]", key="ARGV[7]")
# KEYS[1]: the record, KEYS[2]: the owner's set; ARGV[1]: the record key.
_DELETE_INDEXED = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
# KEYS[1]: the owner's set; ARGV[1]: now. Prunes, then lists what is left.
_OWNED = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
_SCRIPT_SHA = hashlib.sha1(_COMPARE_AND_SET.encode(), usedforsecurity=False).hexdigest()

# Every error redis-py raises: the server cannot be reached, or answered an error.
_REDIS_ERRORS = (redis.RedisError, RedisClusterException)
_CERT_REQS = ("required", "optional", "none")

Client = Any
"""A redis-py client: ``redis.Redis`` or ``redis.cluster.RedisCluster``."""
Address = tuple[str, int]


def _seconds(text: str) -> float:
    return float(text)


# The options a URL's query may carry, and how each is read.
_QUERY_OPTIONS: dict[str, Callable[[str], object]] = {
    "key_prefix": str,
    "connect_timeout": _seconds,
    "timeout": _seconds,
    "wait_for_replicas": int,
    "wait_timeout": _seconds,
    "max_connections": int,
    "db": int,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": str,
    "ssl_check_hostname": parse_flag,
}
_TLS_OPTIONS = tuple(name for name in _QUERY_OPTIONS if name.startswith("ssl_"))
_DEFAULTS: dict[str, object] = {
    "key_prefix": "",
    "connect_timeout": 0.5,
    "timeout": 0.5,
    "wait_for_replicas": 0,
    "wait_timeout": 0.5,
    "max_connections": None,
}


class _Target:
    """Where the records live, parsed from a URL: what to connect to, never how."""

    def __init__(self, url: str) -> None:
        try:
            parts = urlsplit(url.strip())
        except ValueError:
            raise _error("url", "is not a URL") from None
        self.scheme = parts.scheme.lower()
        if self.scheme not in SCHEMES:
            raise _error("url", f"scheme must be one of {', '.join(s + '://' for s in SCHEMES)}")
        if parts.fragment:
            raise _error("url", "has a #fragment")
        try:
            self.username, self.password, hosts = credentials(parts)
        except ValueError as exc:
            raise _error("url", str(exc)) from None
        self.options = _query_options(parts)
        self.db = 0
        self.service = ""
        self.path = ""
        self.addresses: tuple[Address, ...] = ()
        if self.scheme == "unix":
            self._unix(hosts, parts)
        elif self.scheme == "redis+sentinel":
            self._sentinel(hosts, parts)
        elif self.scheme == "redis+cluster":
            self._cluster(hosts, parts)
        else:
            self._standalone(hosts, parts)
        if "db" in self.options:
            if self.scheme != "unix":
                raise _error("url", "takes the database number in its path (/0), not as ?db=")
            self.db = self.options.pop("db")  # type: ignore[assignment]
        if self.db < 0:
            raise _error("url", f"database number must be 0 or more, got {self.db}")
        if self.scheme != "rediss" and any(name in self.options for name in _TLS_OPTIONS):
            raise _error("url", "takes ssl_* options only with rediss:// (TLS)")
        self.shown = self.describe()

    def _standalone(self, hosts: str, parts: SplitResult) -> None:
        form = f"{self.scheme}://[[user]:password@]host[:port][/db]"
        self.addresses = _addresses(hosts, DEFAULT_PORT, form)
        if len(self.addresses) != 1:
            raise _error("url", f"names one server; write {form} (or redis+cluster://)")
        self.db = _db(parts.path.strip("/"), form)

    def _unix(self, hosts: str, parts: SplitResult) -> None:
        form = "unix://[[user]:password@]/path/to/redis.sock[?db=0]"
        if hosts or not parts.path.startswith("/") or parts.path.endswith("/"):
            raise _error("url", f"must name a socket file; write {form}")
        self.path = unquote(parts.path)

    def _sentinel(self, hosts: str, parts: SplitResult) -> None:
        form = "redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]"
        self.addresses = _addresses(hosts, DEFAULT_SENTINEL_PORT, form)
        service, _, db = parts.path.strip("/").partition("/")
        if not service:
            raise _error("url", f"needs the Sentinel service name; write {form}")
        self.service = unquote(service)
        self.db = _db(db, form)

    def _cluster(self, hosts: str, parts: SplitResult) -> None:
        form = "redis+cluster://[[user]:password@]host:port[,host:port...]"
        self.addresses = _addresses(hosts, DEFAULT_PORT, form)
        if parts.path.strip("/"):
            raise _error("url", f"a Redis Cluster has only database 0; write {form}")

    def describe(self) -> str:
        """The URL without its password: for repr, logs and errors."""
        user = ""
        if self.username is not None or self.password is not None:
            user = (self.username or "") + (":***" if self.password is not None else "") + "@"
        if self.scheme == "unix":
            return f"unix://{user}{self.path}" + (f"?db={self.db}" if self.db else "")
        hosts = ",".join(_format_address(address) for address in self.addresses)
        path = f"/{self.service}" if self.service else ""
        if self.db:
            path += f"/{self.db}"
        return f"{self.scheme}://{user}{hosts}{path}"


class RedisStore:
    """Session records in Redis.

    ``url_or_client`` is a URL (see ``docs/redis.md``) or a ready redis-py
    client (``redis.Redis``, a Sentinel ``master_for`` client, or a
    ``RedisCluster``), which is then used as it is: its own timeouts and
    credentials apply.

    - ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS
      (``?ssl_ca_certs=&ssl_certfile=&ssl_keyfile=&ssl_cert_reqs=&ssl_check_hostname=``),
    - ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``,
    - ``redis+sentinel://[[user]:password@]host:port[,...]/service_name[/db]``: the
      master Sentinel names, found again after a failover; the credentials are the
      master's, the sentinels are reached without any,
    - ``redis+cluster://[[user]:password@]host:port[,...]``: seed nodes of a Cluster.

    The keyword options may also be given in the URL's query (``?key_prefix=app:``),
    not both ways. ``connect_timeout`` and ``timeout`` bound each connect and each
    reply, in seconds. ``wait_for_replicas=N`` acknowledges a write only once N
    replicas hold it, waiting up to ``wait_timeout`` seconds (a write they did not
    confirm raises :class:`~wsgi_session.errors.StoreWriteFailed`). At most
    ``max_connections`` connections per server are open at once (unlimited by default).

    Connections open on first use, separately in each process. Thread-safe.
    """

    def __init__(
        self,
        url_or_client: str | Client,
        *,
        key_prefix: str | None = None,
        connect_timeout: float | None = None,
        timeout: float | None = None,
        wait_for_replicas: int | None = None,
        wait_timeout: float | None = None,
        max_connections: int | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        given: dict[str, object] = {
            name: value
            for name, value in (
                ("key_prefix", key_prefix),
                ("connect_timeout", connect_timeout),
                ("timeout", timeout),
                ("wait_for_replicas", wait_for_replicas),
                ("wait_timeout", wait_timeout),
                ("max_connections", max_connections),
            )
            if value is not None
        }
        self._target: _Target | None = None
        self._given_client: Client | None = None
        # A Cluster: a record and its owner's set are in different slots, out of one script's reach.
        self._spans_slots = False
        if isinstance(url_or_client, str):
            target = _Target(url_or_client)
            both = sorted(set(given) & set(target.options))
            if both:
                raise _error(both[0], "is given both in the URL and as an argument")
            given.update(target.options)
            if username is not None:
                target.username = username
            if password is not None:
                target.password = password
            target.shown = target.describe()
            self._target = target
            self._spans_slots = target.scheme == "redis+cluster"
        elif _is_client(url_or_client):
            if username is not None or password is not None:
                raise _error("password", "goes into the client, not the store, with a client")
            if _decodes_responses(url_or_client):
                raise _error(
                    "url_or_client", "needs a client that returns bytes (decode_responses=False)"
                )
            self._given_client = url_or_client
            self._spans_slots = isinstance(url_or_client, RedisCluster)
        else:
            raise _error(
                "url_or_client",
                f"must be a redis:// URL or a redis-py client, got {type(url_or_client).__name__}",
            )
        options = {**_DEFAULTS, **given}
        self.key_prefix = _check_prefix(options["key_prefix"])
        self.connect_timeout = _check_seconds("connect_timeout", options["connect_timeout"])
        self.timeout = _check_seconds("timeout", options["timeout"])
        self.wait_timeout = _check_seconds("wait_timeout", options["wait_timeout"])
        self.wait_for_replicas = _check_count("wait_for_replicas", options["wait_for_replicas"], 0)
        limit = options["max_connections"]
        self.max_connections = None if limit is None else _check_count("max_connections", limit, 1)
        self._tls = {name: value for name, value in given.items() if name in _TLS_OPTIONS}
        if "ssl_cert_reqs" in self._tls and self._tls["ssl_cert_reqs"] not in _CERT_REQS:
            raise _error("ssl_cert_reqs", f"must be one of {', '.join(_CERT_REQS)}")
        self._prefix = self.key_prefix.encode()
        self._lock = threading.Lock()
        # This process's link (the given client, or one built on first use);
        # reset in a forked child.
        self._current: _Link | None = None if self._given_client is None else _Link(url_or_client)
        self._inherited: Client | None = None
        _IN_THIS_PROCESS.add(self)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """The store a URL describes; its query may carry the keyword options."""
        if not isinstance(url, str):
            raise _error("url", f"must be a string, got {type(url).__name__}")
        return cls(url, **options)

    @property
    def where(self) -> str:
        """The server(s), without secrets: for messages."""
        if self._target is not None:
            return self._target.shown
        return f"the given {type(self._given_client).__name__} client"

    # -- the Store protocol ----------------------------------------------------

    def load(self, key: str) -> tuple[bytes, Version] | None:
        """Return ``(data, token)`` for a live record, or ``None``: one ``GET``."""
        full_key = self._key(key)
        value: bytes | None = self._call("load", _run, ("GET", full_key))
        if value is None:
            return None
        return value[TOKEN_BYTES:], value[:TOKEN_BYTES]

    def save(self, key: str, data: bytes, ttl: int, version: Version | None = None) -> bool:
        """Create (``SET NX``) or compare-and-set (a Lua script) the record, with its TTL.

        Returns ``False`` when the record exists (create), or changed or vanished
        (compare-and-set).
        """
        full_key = self._key(key)
        check_record(data, ttl)
        if version is not None and not (isinstance(version, bytes) and len(version) <= TOKEN_BYTES):
            raise ValueError(f"version must be a token load() returned, got {version!r}")
        value = _new_token() + data
        if version is None:
            command: tuple[Any, ...] = ("SET", full_key, value, "NX", "EX", ttl)
        else:
            command = ("EVALSHA", _SCRIPT_SHA, 1, full_key, version, value, ttl)
        reply = self._write("save", full_key, command)
        # SET NX answers OK or nothing (True or None through redis-py's reply callbacks);
        # the script 1 or 0.
        return reply in (1, b"OK")

    def delete(self, key: str) -> None:
        """Remove the record; a missing record is not an error."""
        full_key = self._key(key)
        self._write("delete", full_key, ("DEL", full_key))

    # -- the KeyedScan protocol (the bulk copy): SCAN, then the records in key order ---

    def scan(self, after: str | None = None) -> Iterator[tuple[str, bytes, float]]:
        """Records in key order: every key is listed (SCAN) and sorted first."""
        for key in self._record_keys():
            if after is not None and key <= after:
                continue
            full_key = self._key(key)
            value = self._call("scan", _run, ("GET", full_key))
            left = self._call("scan", _run, ("PTTL", full_key))
            if isinstance(value, bytes) and isinstance(left, int) and left > 0:
                yield key, value[TOKEN_BYTES:], left / 1000

    def count(self) -> int:
        return len(self._record_keys())

    def _record_keys(self) -> list[str]:
        """The store keys of the records under this prefix (not the owner index's sets)."""
        pattern = _GLOB_SPECIAL.sub(r"\\\g<0>", self.key_prefix).encode() + b"*"
        found = self._call("scan", _scan, pattern)
        keys = (key[len(self._prefix) :].decode("ascii", "replace") for key in found)
        return sorted(key for key in keys if _RECORD_KEY.fullmatch(key))

    # -- the OwnerIndex protocol: a sorted set per owner -----------------------------

    def index_owner(self, owner: str, key: str, until: int) -> None:
        """Add ``key`` to ``owner``'s sorted set (score ``until``), pruning the set."""
        owner_key = self._owner_key(owner)
        now = int(time.time())
        self._write("index", owner_key, ("EVAL", _INDEX_OWNER, 1, owner_key, now, until, key))

    def unindex_owner(self, owner: str, key: str) -> None:
        owner_key = self._owner_key(owner)
        self._write("unindex", owner_key, ("ZREM", owner_key, key))

    # -- IndexedWrites: one script for a record and its owner's set -------------------

    def save_indexed(
        self, key: str, data: bytes, ttl: int, version: Version | None, owner: str, until: int
    ) -> bool:
        """:meth:`save`, and where it took :meth:`index_owner`, in one script.

        On a Cluster, the record and the owner's set live in different slots,
        which one script cannot reach: there it is the two calls.
        """
        if self._spans_slots:
            saved = self.save(key, data, ttl, version)
            if saved:
                self.index_owner(owner, key, until)
            return saved
        full_key = self._key(key)
        if version is not None and not (isinstance(version, bytes) and len(version) <= TOKEN_BYTES):
            raise ValueError(f"version must be a token load() returned, got {version!r}")
        check_record(data, ttl)
        owner_key = self._owner_key(owner)
        command = (
            "EVAL",
            _SAVE_INDEXED,
            2,
            full_key,
            owner_key,
            0 if version is None else 1,
            b"" if version is None else version,
            _new_token() + data,
            ttl,
            int(time.time()),
            until,
            key,
        )
        return bool(self._write("save", full_key, command) == 1)

    def delete_indexed(self, key: str, owner: str) -> None:
        """:meth:`delete` and :meth:`unindex_owner` in one script (two calls on a Cluster)."""
        if self._spans_slots:
            self.delete(key)
            self.unindex_owner(owner, key)
            return
        full_key = self._key(key)
        command = ("EVAL", _DELETE_INDEXED, 2, full_key, self._owner_key(owner), key)
        self._write("delete", full_key, command)

    def owned(self, owner: str) -> list[str]:
        owner_key = self._owner_key(owner)
        now = int(time.time())
        members: list[bytes] = self._write("list", owner_key, ("EVAL", _OWNED, 1, owner_key, now))
        return [member.decode() for member in members]

    # -- the RecordScan protocol -------------------------------------------------------

    def records(self) -> Iterator[bytes]:
        """Each record's data: ``SCAN`` over the prefix (every node of a Cluster), then ``GET``."""
        owner_keys = self._prefix + b"owner:"
        batch: list[bytes] = []
        for key in self._call("scan", _scan, self._prefix + b"*"):
            if key.startswith(owner_keys):
                continue
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                yield from self._values(batch)
                batch = []
        yield from self._values(batch)

    def record_count(self) -> int | None:
        """The keys in the database (the owner index's and any other's too)."""
        return self.figures()["keys"]

    def figures(self) -> dict[str, int]:
        """The memory Redis uses (added up over a Cluster's nodes) and its keys."""
        info, keys = self._call("info", _memory_and_keys)
        return {"used memory bytes": info, "keys": keys}

    def _values(self, keys: list[bytes]) -> list[bytes]:
        if not keys:
            return []
        values: list[bytes | None] = self._call("get", _get_all, keys)
        return [value[TOKEN_BYTES:] for value in values if value is not None]

    def _owner_key(self, owner: str) -> bytes:
        # The hash tag ({...}) is on the owner's key only: the set lives in one
        # Cluster slot, while the session records it points at still spread.
        return self._key(f"owner:{{{owner}}}")

    def close(self) -> None:
        """Close this process's connections; the next call opens new ones.

        A client given to the constructor is left open: it belongs to the caller.
        """
        if self._given_client is not None:
            return
        with self._lock:
            link, self._current = self._current, None
            inherited, self._inherited = self._inherited, None
        if inherited is not None:
            _close_inherited(inherited)
        if link is not None:
            link.client.close()  # its pool disconnects every connection, held ones included

    # -- plumbing ------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty string, got {key!r}")
        return self._prefix + key.encode()

    def _forked(self) -> None:
        """In a forked child: the parent's client is closed before this process builds its own."""
        if self._given_client is None and self._current is not None:
            self._inherited, self._current = self._current.client, None
        self._lock = threading.Lock()  # another thread may have held it at the fork

    def _link(self) -> _Link:
        """This process's link, built on first use (a forked child builds its own)."""
        with self._lock:
            link = self._current
            if link is None:
                inherited, self._inherited = self._inherited, None
                if inherited is not None:
                    _close_inherited(inherited)
                target = self._target
                assert target is not None
                # Sentinel and Cluster clients choose the server per command: they keep
                # redis-py's own path.
                held = target.scheme in ("redis", "rediss", "unix")
                link = self._current = _Link(self._new_client(), held=held)
            return link

    def _new_client(self) -> Client:
        target = self._target
        assert target is not None
        socket_timeout = self.timeout
        if self.wait_for_replicas:
            # WAIT holds the reply up to wait_timeout: the read must outlast it.
            socket_timeout += self.wait_timeout
        options: dict[str, Any] = {
            "username": target.username,
            "password": target.password,
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": socket_timeout,
            # One immediate retry on a fresh connection when a pooled one was
            # closed by the server (restart, idle timeout, failover). A write
            # that did land answers "exists" / "changed" the second time, a
            # conflict, never a false success.
            "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        }
        if self.max_connections is not None:
            options["max_connections"] = self.max_connections
        if target.scheme == "rediss":
            options.update(ssl=True, **self._tls)
        if target.scheme == "redis+cluster":
            return RedisCluster(
                startup_nodes=[_cluster_node(host, port) for host, port in target.addresses],
                **options,
            )
        if target.scheme == "redis+sentinel":
            sentinel = _sentinel(
                list(target.addresses),
                sentinel_kwargs={
                    "socket_connect_timeout": self.connect_timeout,
                    "socket_timeout": self.timeout,
                },
            )
            master_for = cast("Callable[..., redis.Redis]", sentinel.master_for)
            return master_for(target.service, db=target.db, **options)
        if target.scheme == "unix":
            return redis.Redis(unix_socket_path=target.path, db=target.db, **options)
        ((host, port),) = target.addresses
        return redis.Redis(host=host, port=port, db=target.db, **options)

    def _call(self, what: str, run: Callable[..., T], *args: Any) -> T:
        """``run(link, *args)``; an error of redis-py's is the store being unavailable."""
        try:
            return run(self._current or self._link(), *args)
        except _REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis {self.where}: {what} failed: {_describe(exc)}") from exc

    def _write(self, what: str, key: bytes, command: tuple[Any, ...]) -> Any:
        """Run a write ``command``, then ``WAIT`` for the replicas if asked to."""
        if not self.wait_for_replicas:
            return self._call(what, _run, command)
        replies = self._call(what, _run_and_wait, key, command, self._wait)
        reply, confirmed = replies
        if command[0] == "SET" and reply is None:
            return reply  # nothing was written: there is nothing to wait for
        if confirmed < self.wait_for_replicas:
            raise StoreWriteFailed(
                f"Redis {self.where}: {what} was confirmed by {confirmed} of "
                f"{self.wait_for_replicas} replicas within {self.wait_timeout} s"
            )
        return reply

    @property
    def _wait(self) -> tuple[str, int, int]:
        return ("WAIT", self.wait_for_replicas, max(1, round(self.wait_timeout * 1000)))

    def __repr__(self) -> str:
        where = repr(self._target.shown) if self._target is not None else "client"
        options = f"key_prefix={self.key_prefix!r}"
        if self.wait_for_replicas:
            options += f", wait_for_replicas={self.wait_for_replicas}"
        return f"RedisStore({where}, {options})"


_GLOB_SPECIAL = re.compile(r"[*?\[\]\\]")
_RECORD_KEY = re.compile(r"[0-9a-f]{64}")  # a hash, as every key of a record of ours


class _Link:
    """A redis-py client, and how one command reaches the server through it.

    redis-py's own path for a command (take a connection from the pool and check
    it, a retry wrapper, observability hooks, hand the connection back) costs
    about twice what sending the command and parsing its reply cost: ~110k
    instructions of a ~165k GET (callgrind, redis-py 8). So for the one-server
    clients it builds itself (``held``), the store keeps the connections it
    takes from the client's pool and sends each command on one of them
    directly; the pool still opens them, and bounds them by ``max_connections``.
    Sentinel and Cluster clients, and a client given to the store, run every
    command through ``execute_command``.
    """

    def __init__(self, client: Client, *, held: bool = False) -> None:
        self.client = client
        self._pool = client.connection_pool if held else None
        self._idle: deque[Any] = deque()
        self.send: Callable[..., Any] = self._send_held if held else client.execute_command

    def _send_held(self, *command: Any) -> Any:
        """Send ``command`` on a held connection and read its reply."""
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self._pool.get_connection()  # type: ignore[union-attr]
        try:
            try:
                connection.send_command(*command)
                return connection.read_response()
            except redis.ConnectionError:
                # Closed by the server while it sat idle (restart, idle timeout): once
                # more on a fresh connection, as the Retry the other clients get does.
                # The failed connection disconnected itself; sending reconnects it. A
                # write that did land answers "exists" / "changed" the second time, a
                # conflict, never a false success.
                connection.send_command(*command)
                return connection.read_response()
        except redis.ResponseError:
            raise  # the whole error reply was read: the connection is in step
        except BaseException:
            # Interrupted between the command and its reply: what is left to read
            # on this socket is unknown, so the next use starts on a new one.
            connection.disconnect()
            raise
        finally:
            self._idle.append(connection)


def _scan(link: _Link, pattern: bytes) -> list[bytes]:
    keys: list[bytes] = list(link.client.scan_iter(match=pattern, count=SCAN_BATCH))
    return keys


def _get_all(link: _Link, keys: list[bytes]) -> list[bytes | None]:
    pipe = link.client.pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
    values: list[bytes | None] = pipe.execute()
    return values


def _memory_and_keys(link: _Link) -> tuple[int, int]:
    info: dict[str, Any] = link.client.info("memory")
    if "used_memory" not in info:  # a Cluster: one section per node
        used = sum(int(node.get("used_memory", 0)) for node in info.values())
    else:
        used = int(info["used_memory"])
    keys = link.client.dbsize()
    return used, int(sum(keys.values()) if isinstance(keys, dict) else keys)


def _run(link: _Link, command: tuple[Any, ...]) -> Any:
    """Run one command; a script the server does not know yet is sent whole."""
    try:
        return link.send(*command)
    except NoScriptError:
        # Nothing ran. EVAL runs the script and caches it for the next EVALSHA.
        return link.send("EVAL", _COMPARE_AND_SET, *command[2:])


def _run_and_wait(
    link: _Link, key: bytes, command: tuple[Any, ...], wait: tuple[str, int, int]
) -> tuple[Any, int]:
    """``command`` then ``WAIT`` on the same connection, in one round trip."""
    client = link.client
    if isinstance(client, RedisCluster):
        # WAIT counts the replicas of the connection it is sent on: it must
        # follow the write on the connection to the key's master.
        node_of = cast("Callable[[bytes], ClusterNode | None]", client.get_node_from_key)
        node = node_of(key)
        connection = node.redis_connection if node is not None else None
        if connection is None:
            client.nodes_manager.initialize()
            raise redis.ConnectionError(f"no connection to the master of slot of {key!r}")
        try:
            return _pipeline(connection, command, wait)
        except redis.RedisError:
            # MOVED (a failover) or a dead master: learn the new slot map for next time.
            client.nodes_manager.initialize()
            raise
    return _pipeline(client, command, wait)


def _pipeline(client: Any, command: tuple[Any, ...], wait: tuple[str, int, int]) -> tuple[Any, int]:
    for attempt in (command, ("EVAL", _COMPARE_AND_SET, *command[2:])):
        pipe = client.pipeline(transaction=False)
        pipe.execute_command(*attempt)
        pipe.execute_command(*wait)
        reply, confirmed = pipe.execute(raise_on_error=False)
        if isinstance(reply, NoScriptError) and attempt[0] == "EVALSHA":
            continue  # nothing ran; send the whole script this time
        if isinstance(reply, Exception):
            raise reply
        if isinstance(confirmed, Exception):
            raise confirmed
        return reply, int(confirmed)
    raise AssertionError("unreachable")


# The version tokens: unique per write (compare-and-set relies on it), never
# secret (they stay in Redis), so a generator seeded from os.urandom does, at
# half the cost of a system call per write. Reseeded in a forked child: two
# processes must never draw the same tokens.
_TOKENS = random.Random()
_new_token = partial(_TOKENS.randbytes, TOKEN_BYTES)

# The stores of this process, told when it forks (instead of asking os.getpid() every call).
_IN_THIS_PROCESS: weakref.WeakSet[RedisStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _TOKENS.seed()
    for store in list(_IN_THIS_PROCESS):
        store._forked()


if hasattr(os, "register_at_fork"):  # no fork, nothing to do, on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_inherited(client: Client) -> None:
    """Close a forked child's copies of its parent's sockets (best effort).

    redis-py shuts a socket down only in the process that opened it, so this
    closes the child's file descriptors and leaves the parent's connections
    working. The pool's own methods would forget these connections unclosed.
    """
    clients = [client]
    if isinstance(client, RedisCluster):
        nodes = cast("Callable[[], list[ClusterNode]]", client.get_nodes)()
        clients = [node.redis_connection for node in nodes if node.redis_connection]
    for each in clients:
        pool = each.connection_pool
        for name in ("_available_connections", "_in_use_connections"):
            try:
                for connection in list(getattr(pool, name, ())):
                    connection.disconnect()
            except Exception:  # noqa: S112 - a private layout that changed: leave it to GC
                continue


def _decodes_responses(client: Client) -> bool:
    try:
        return bool(client.get_encoder().decode_responses)
    except AttributeError:  # not redis-py's usual layout: trust the caller
        return False


def _is_client(value: object) -> bool:
    return isinstance(value, (redis.Redis, RedisCluster))


def _describe(exc: BaseException) -> str:
    """The error's message; redis-py never puts a password in one."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error(setting: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"RedisStore {{{setting}}} {{problem}}", setting, problem=problem)


def _query_options(parts: SplitResult) -> dict[str, object]:
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if name in ("password", "username"):
            raise _error(
                "url", f"takes the {name} before the host (user:password@), not as ?{name}="
            )
    try:
        return read_query(parts.query, _QUERY_OPTIONS)
    except BadOption as bad:
        raise _error(bad.name, f"cannot be {bad.text!r}") from None
    except ValueError as exc:
        raise _error("url", f"has an {exc}") from None


def _addresses(hosts: str, default_port: int, form: str) -> tuple[Address, ...]:
    found = []
    for spec in hosts.split(","):
        match = ADDRESS.fullmatch(spec.strip())
        port = int(match["port"] or default_port) if match else 0
        if match is None or not 0 < port < 65536:
            raise _error("url", f"has {spec!r} where a host[:port] belongs; write {form}")
        found.append((match["ipv6"] or match["host"], port))
    if len(set(found)) != len(found):
        raise _error("url", "lists a server more than once")
    return tuple(found)


def _db(text: str, form: str) -> int:
    if not text:
        return 0
    if not text.isdigit():
        raise _error("url", f"has {text!r} where the database number belongs; write {form}")
    return int(text)


def _format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise _error("key_prefix", f"must be a string, got {prefix!r}")
    return prefix


def _check_seconds(setting: str, value: object) -> float:
    check_seconds(setting, value, minimum=0, whole=False, owner="RedisStore ")
    return float(value)  # type: ignore[arg-type]


def _check_count(setting: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise _error(setting, f"must be a whole number of at least {least}, got {value!r}")
    return value
