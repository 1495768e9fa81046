"""Flask-Session 0.7 and later as a migration source (``flask-session+redis://...``).

The old session is Flask-Session's record: its key prefix and id (a
``secrets.token_urlsafe`` of ``sid_length`` bytes), the id signed with
Flask-Session's own signer (``itsdangerous.Signer``, salt ``flask-session``)
where ``use_signer`` was on, the data in its msgspec formats (msgpack, then
JSON, in the order its serializer tries them). Flask-Session's own decoder
falls back to ``pickle.loads`` for records older than 0.7: that path is never
taken here. The data is decoded with msgspec directly, and a record in no
msgspec format (a pickle, most likely) is a fresh session and a warning.

The records are read with the client library Flask-Session used on that
server: redis-py for ``flask-session+redis://`` (``rediss://``), pymemcache
for ``flask-session+memcached://host:port``, SQLAlchemy for
``flask-session+sqlalchemy+<its database URL>`` (``?table=`` and ``?schema=``
where they are not Flask-Session's defaults).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from wsgi_session.errors import ConfigurationError, StoreUnavailable
from wsgi_session.migrate.base import Claim, Host, OldCookie, unreadable
from wsgi_session.stores.base import parse_flag

PREFIX = "flask-session+"
DEFAULT_KEY_PREFIX = "session:"  # Flask-Session's SESSION_KEY_PREFIX
DEFAULT_SID_LENGTH = 32  # Flask-Session's SESSION_ID_LENGTH
DEFAULT_TABLE = "sessions"  # Flask-Session's SESSION_SQLALCHEMY_TABLE
SQLALCHEMY = "sqlalchemy+"
PERMANENT = "_permanent"
MAX_COOKIE = 512
TIMEOUT = 2.0


class Records(Protocol):
    """Flask-Session's records on one server: raw bytes by key."""

    def get(self, key: str) -> bytes | None: ...

    def ttl(self, key: str) -> float | None:
        """Seconds the record has left; ``None`` where the server does not say."""
        ...

    def delete(self, key: str) -> None: ...


class FlaskSessionSource:
    """The sessions Flask-Session kept in ``records`` under ``key_prefix``."""

    def __init__(
        self,
        records: Records,
        host: Host,
        description: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        use_signer: bool = False,
        sid_length: int = DEFAULT_SID_LENGTH,
    ) -> None:
        import msgspec  # Flask-Session's own serialization library

        self.records = records
        self.description = description
        self.key_prefix = key_prefix
        # secrets.token_urlsafe(sid_length): unpadded URL-safe base64 of that many bytes.
        self.sid = re.compile(rf"[A-Za-z0-9_-]{{{-(-sid_length * 4 // 3)}}}")
        self.decoders = (msgspec.msgpack.Decoder(), msgspec.json.Decoder())
        self.decode_error = msgspec.DecodeError
        self.unsign: Callable[[str], str | None] | None = None
        if use_signer:
            from itsdangerous import BadData, Signer
            from itsdangerous.encoding import base64_decode, base64_encode

            signer = Signer(host.secret_key, salt="flask-session", key_derivation="hmac")

            def unsign(cookie: str) -> str | None:
                # Only the spelling the signer issued: itsdangerous decodes leniently.
                signature = cookie.rpartition(".")[2].encode("ascii")
                try:
                    if base64_encode(base64_decode(signature)) != signature:
                        return None
                    return signer.unsign(cookie).decode("ascii")
                except (BadData, UnicodeDecodeError):
                    return None

            self.unsign = unsign
        self.cookie: OldCookie | None = host.cookie  # Flask-Session's is SESSION_COOKIE_NAME

    @classmethod
    def from_url(cls, url: str, host: Host) -> FlaskSessionSource:
        """``flask-session+redis://...`` or ``+memcached://host:port``, with Flask-Session's
        options in the query: ``key_prefix``, ``use_signer``, ``sid_length``."""
        parts = urlsplit(url[len(PREFIX) :])
        options: dict[str, str] = {}
        rest = []
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in ("key_prefix", "use_signer", "sid_length", "table", "schema"):
                options[name] = value
            else:
                rest.append((name, value))
        # Rebuilt as text: urlunsplit would drop the empty host of sqlite:////path.
        base = url[len(PREFIX) :].partition("?")[0]
        server = f"{base}?{urlencode(rest)}" if rest else base
        try:
            key_prefix = options.get("key_prefix", DEFAULT_KEY_PREFIX)
            use_signer = parse_flag(options.get("use_signer", "0"))
            sid_length = int(options.get("sid_length", DEFAULT_SID_LENGTH))
        except ValueError as exc:
            raise ConfigurationError(
                "{migrate_from}: a Flask-Session option is wrong ({problem})",
                "migrate_from",
                problem=exc,
            ) from None
        scheme = parts.scheme.lower()
        records: Records
        if scheme in ("redis", "rediss", "unix"):
            records = RedisRecords(server)
        elif scheme == "memcached":
            records = MemcachedRecords(parts.netloc)
        elif scheme.startswith(SQLALCHEMY):
            records = SQLAlchemyRecords(
                server[len(SQLALCHEMY) :],
                options.get("table", DEFAULT_TABLE),
                options.get("schema") or None,
            )
        else:
            raise ConfigurationError(
                "{migrate_from}: Flask-Session on {scheme!r} is not a source; allowed: "
                "flask-session+redis://, +rediss://, +unix://, +memcached://, "
                "+sqlalchemy+<SQLAlchemy URL>",
                "migrate_from",
                scheme=scheme,
            )
        shown = url if parts.password is None else url.replace(parts.password, "***")
        return cls(
            records,
            host,
            shown,
            key_prefix=key_prefix,
            use_signer=use_signer,
            sid_length=sid_length,
        )

    def _sid(self, cookie: str) -> str | None:
        if len(cookie) > MAX_COOKIE or not cookie.isascii():
            return None
        sid = cookie if self.unsign is None else self.unsign(cookie)
        return sid if sid is not None and self.sid.fullmatch(sid) else None

    def identify(self, cookie: str) -> str | None:
        return self._sid(cookie)

    def claim(self, cookie: str) -> Claim | None:
        sid = self._sid(cookie)
        if sid is None:
            return None
        key = self.key_prefix + sid
        raw = self.records.get(key)
        if not raw:
            return None
        data = self._decode(raw)
        if data is None:
            unreadable(
                self.description,
                "not in a msgspec format: a pickle of Flask-Session before 0.7, never "
                "unpickled (docs/migrating.md says how to convert such records)",
            )
            return None
        permanent = bool(data.pop(PERMANENT, False))
        return Claim(data, permanent, self.records.ttl(key), self.cookie, handle=key)

    def _decode(self, raw: bytes) -> dict[str, Any] | None:
        """msgpack, then JSON, as Flask-Session's serializer tries them; never its pickle."""
        for decoder in self.decoders:
            try:
                data = decoder.decode(raw)
            except self.decode_error:
                continue
            return data if isinstance(data, dict) else None
        return None

    def retire(self, claim: Claim) -> None:
        assert isinstance(claim.handle, str)
        self.records.delete(claim.handle)

    def ping(self) -> None:
        self.records.get(self.key_prefix + "0")


class RedisRecords:
    """Flask-Session's records on a Redis server, through redis-py as it used them."""

    def __init__(self, url: str) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        # One try per command: an old server that does not answer is a 503 now, not later.
        self.client = redis.Redis.from_url(
            url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0)
        )

    def _run(self, command: str, *args: Any) -> Any:
        try:
            # redis-py's annotations vary by release: the call's signature, said once.
            execute = cast("Callable[..., object]", self.client.execute_command)
            return execute(command, *args)
        except self.errors as exc:
            raise StoreUnavailable(f"Flask-Session's Redis: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        found = self._run("GET", key)
        return found if isinstance(found, bytes) else None

    def ttl(self, key: str) -> float | None:
        left = self._run("TTL", key)
        return float(left) if isinstance(left, int) and left > 0 else None

    def delete(self, key: str) -> None:
        self._run("DEL", key)


class MemcachedRecords:
    """Flask-Session's records on a memcached server, through pymemcache."""

    def __init__(self, servers: str) -> None:
        from pymemcache.client.hash import HashClient

        addresses = []
        for server in servers.split(","):
            name, _, port = server.rpartition(":")
            addresses.append((name or server, int(port) if port.isdigit() else 11211))
        self.client = HashClient(
            addresses, timeout=TIMEOUT, connect_timeout=TIMEOUT, ignore_exc=False, retry_attempts=1
        )

    def _run(self, call: Callable[[], Any]) -> Any:
        from pymemcache.exceptions import MemcacheError

        try:
            return call()
        except (MemcacheError, OSError) as exc:
            raise StoreUnavailable(f"Flask-Session's memcached: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        found = self._run(lambda: self.client.get(key))
        return found if isinstance(found, bytes) else None

    def ttl(self, key: str) -> float | None:
        return None  # memcached does not say: ours apply

    def delete(self, key: str) -> None:
        self._run(lambda: self.client.delete(key))


class SQLAlchemyRecords:
    """Flask-Session's records in its SQLAlchemy table, through SQLAlchemy.

    Its model: ``session_id`` (the key prefix and the id), ``data`` (the
    msgspec bytes), ``expiry`` (naive UTC); an expired row is no record, as
    Flask-Session reads it.
    """

    def __init__(self, url: str, table: str, schema: str | None) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.table = sa.Table(
            table,
            sa.MetaData(schema=schema),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("session_id", sa.String(255)),
            sa.Column("data", sa.LargeBinary),
            sa.Column("expiry", sa.DateTime),
        )
        self.errors = (sa.exc.OperationalError, sa.exc.InterfaceError)

    def _row(self, key: str) -> tuple[bytes, float] | None:
        """The record's data and seconds left, if it is live."""
        table = self.table
        query = self.sa.select(table.c.data, table.c.expiry).where(table.c.session_id == key)
        try:
            with self.engine.connect() as connection:
                row = connection.execute(query).first()
        except self.errors as exc:
            raise StoreUnavailable(f"Flask-Session's database: {exc}") from exc
        if row is None or row.expiry is None:
            return None
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        left = (row.expiry - now).total_seconds()
        return (bytes(row.data), left) if left > 0 and row.data else None

    def get(self, key: str) -> bytes | None:
        row = self._row(key)
        return None if row is None else row[0]

    def ttl(self, key: str) -> float | None:
        row = self._row(key)
        return None if row is None else row[1]

    def delete(self, key: str) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(self.table.delete().where(self.table.c.session_id == key))
        except self.errors as exc:
            raise StoreUnavailable(f"Flask-Session's database: {exc}") from exc
