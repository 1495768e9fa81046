"""A user's sessions: keep each record's owner in the store's owner index, list, revoke.

The backend stamps each record with its owner (:class:`~wsgi_session.owner.Owner`)
and keeps the store's :class:`~wsgi_session.stores.base.OwnerIndex` in step
only when that changes (a login, a logout, a regeneration) or when the
index entry would lapse before the record: an ordinary request pays nothing.
:class:`Sessions` reads the index: it lists the owner's live sessions from
their records' headers and revokes them by deleting the records, which every
worker sees at once.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from wsgi_session.backends.cas import same_digest
from wsgi_session.cookies import CookieSigner, KeyRing
from wsgi_session.errors import SessionsUnsupported
from wsgi_session.lifetime import Lifetime
from wsgi_session.metrics.audit import AuditLog
from wsgi_session.metrics.base import NO_METRICS, Metrics
from wsgi_session.owner import HASH_PURPOSE, Owner, OwnerHasher, decode_client, encode_client
from wsgi_session.record import Record
from wsgi_session.sealing import RecordSealer, can_open_sealed
from wsgi_session.serialization import EMPTY, loads
from wsgi_session.session import Origin, Session
from wsgi_session.stores.base import OwnerIndex, Store

HANDLE_PURPOSE = "wsgi_session.handle"
INDEX_AHEAD = 2  # index entries last this many record lifetimes: re-indexing is rare
MAX_REVOKE_PASSES = 5  # a pass catches sessions regenerated while the one before ran
CLIENT_PURPOSE = b"wsgi_session.client.aes-256-gcm"
# Marks a client field sealed under its owner's key; never the first character of base64url.
SEALED_CLIENT = "~"


@dataclass(frozen=True)
class SessionInfo:
    """One live session of an owner, as its record's header describes it."""

    # For revoke_one(handle, owner): signed for that purpose and that owner alone,
    # never usable as a cookie, and refused once the session belongs to someone else.
    handle: str
    created: datetime
    last_seen: datetime  # the last time the record was written (a change or a refresh)
    expires: datetime
    current: bool  # the session of the request passed as ``current``
    user_agent: str = ""  # recorded at login with record_client=True
    address: str = ""  # the client's network (/24 or /48), with record_client=True


class Sessions(Protocol):
    """What ``middleware.sessions`` offers."""

    def of(self, owner: object, current: Session | object = None) -> list[SessionInfo]: ...

    def revoke(self, owner: object, keep: Session | object = None) -> int: ...

    def revoke_one(self, handle: str, owner: object) -> bool: ...


class NoSessions:
    """The null object for a backend that cannot list sessions: every call says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def of(self, owner: object, current: Session | object = None) -> list[SessionInfo]:
        raise SessionsUnsupported(self.reason)

    def revoke(self, owner: object, keep: Session | object = None) -> int:
        raise SessionsUnsupported(self.reason)

    def revoke_one(self, handle: str, owner: object) -> bool:
        raise SessionsUnsupported(self.reason)


def sessions_of(backend: object) -> Sessions:
    """``backend.sessions``, or a :class:`NoSessions` saying that this backend has none."""
    sessions: Sessions | None = getattr(backend, "sessions", None)
    if sessions is not None:
        return sessions
    return NoSessions(f"the backend {type(backend).__name__} cannot list a user's sessions")


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


class OwnerTracking:
    """Which key of the data names the owner, and the owner index to keep in step."""

    def __init__(
        self,
        owner_key: str,
        store: OwnerIndex,
        keys: KeyRing,
        lifetime: Lifetime,
        *,
        seal: bool = False,
    ) -> None:
        """``seal``: records are sealed, and so is the client each one records.

        The client (user agent, network) is sealed under a key derived from
        the secret and the owner's hash, not the session id: listing, which
        holds the owner but no session's id, opens it; a dump of the store
        does not. Sealed clients stay readable with ``seal=False`` while
        ``cryptography`` is installed.
        """
        self.owner_key = owner_key
        self.index = store
        self.hasher = OwnerHasher(keys.derive(HASH_PURPOSE))
        self.lifetime = lifetime
        self.seal = seal
        self.clients = (
            RecordSealer(keys, "seal_records", CLIENT_PURPOSE)
            if seal or can_open_sealed()
            else None
        )

    def client_field(self, client: tuple[str, str], digest: str) -> str:
        """The header field recording ``client`` for the owner hashed ``digest``."""
        field = encode_client(*client)
        if not self.seal or self.clients is None:
            return field
        sealed = self.clients.lock(digest, digest).seal(field.encode("ascii"), b"")
        return SEALED_CLIENT + base64.urlsafe_b64encode(sealed).decode("ascii")

    def client_of(self, owner: Owner) -> tuple[str, str]:
        """``(user agent, network)`` as ``owner``'s record keeps them; empty if unreadable."""
        field = owner.client
        if not field.startswith(SEALED_CLIENT):
            return decode_client(field)
        if self.clients is None:
            return "", ""
        try:
            sealed = base64.urlsafe_b64decode(field[len(SEALED_CLIENT) :].encode("ascii"))
        except (binascii.Error, ValueError):
            return "", ""
        opened = self.clients.lock(owner.digest, owner.digest).open(sealed, b"")
        return decode_client(opened.decode("ascii", "replace")) if opened else ("", "")

    def stamp(self, session: Session, now: float, moved: bool) -> Owner | None:
        """The owner the record written now keeps (``None``: nobody's)."""
        owner = session.get(self.owner_key)
        if owner is None:
            return None
        created = session.created_at(now)
        ttl = self.lifetime.whole_seconds(created, now, session.idle_timeout)
        until = int(now) + INDEX_AHEAD * ttl
        previous = session.origin.owner
        digest = self.hasher.digest(owner)
        if previous is not None and previous.digest == digest:
            if self.seal and previous.client and not previous.client.startswith(SEALED_CLIENT):
                # Sealing was switched on: the client recorded in clear is sealed now.
                client_field = self.client_field(self.client_of(previous), digest)
                return previous._replace(indexed_until=until, client=client_field)
            if not moved and now + ttl < previous.indexed_until:
                return previous  # the common write: nothing to change in the index
            return previous._replace(indexed_until=until)
        client = session.origin.client
        return Owner(digest, until, self.client_field(client, digest) if client else "")

    def same_owner(self, origin: Origin, owner: Owner | None) -> bool:
        """Whether ``owner`` (a record's) is the owner of the record ``origin`` loaded.

        By hash; a record written before a key rotation keeps the hash under
        the key of then, so the loaded owner's hashes under every key count too.
        """
        if same_digest(origin, owner):
            return True
        if origin.owner is None or owner is None:
            return False
        value = loads(origin.text).get(self.owner_key)
        return value is not None and owner.digest in self.hasher.digests(value)

    def after_write(
        self, session: Session, old_key: str, new_key: str, owner: Owner | None
    ) -> None:
        """Bring the index in step with a record written under ``new_key``, if it must be."""
        previous = session.origin.owner
        if owner == previous and old_key == new_key:
            return
        if owner is not None:
            self.index.index_owner(owner.digest, new_key, owner.indexed_until)
        self.forget(session, old_key, new_key, owner)

    def forget(self, session: Session, old_key: str, new_key: str, owner: Owner | None) -> None:
        """Drop the old record's entry when it no longer belongs to the same owner and key."""
        previous = session.origin.owner
        if previous is None:
            return
        if old_key != new_key or owner is None or owner.digest != previous.digest:
            self.index.unindex_owner(previous.digest, old_key)


class OwnerSessions:
    """``middleware.sessions`` for a store with an owner index."""

    metrics: Metrics = NO_METRICS  # revocations are counted here, and audited
    audit: AuditLog | None = None

    def __init__(
        self, store: Store, tracking: OwnerTracking, keys: KeyRing, store_key: Callable[[str], str]
    ) -> None:
        self.store = store
        self.tracking = tracking
        self.index = tracking.index
        self.lifetime = tracking.lifetime
        self.handles: CookieSigner = keys.signer(HANDLE_PURPOSE)
        self.store_key = store_key

    def of(self, owner: object, current: Session | object = None) -> list[SessionInfo]:
        """``owner``'s live sessions, oldest first; ``current``: the request's ``Session``."""
        now = self.lifetime.clock()
        current_keys = self._keys_of(current)
        found: list[SessionInfo] = []
        for key, record in self._live(owner):
            assert record.owner is not None
            remaining = self.lifetime.remaining(
                record.created, record.accessed, record.idle_timeout, now
            )
            agent, address = self.tracking.client_of(record.owner)
            found.append(
                SessionInfo(
                    handle=self._handle(key, record.owner.digest),
                    created=_utc(record.created),
                    last_seen=_utc(record.accessed),
                    expires=_utc(now + remaining),
                    current=key in current_keys,
                    user_agent=agent,
                    address=address,
                )
            )
        return sorted(found, key=lambda info: info.created)

    def revoke(self, owner: object, keep: Session | object = None) -> int:
        """End every session of ``owner`` but ``keep``'s; returns how many were live.

        The records are deleted, so every worker refuses them from the next
        request on; a request in flight finds its record gone when it saves and
        drops its changes. Each pass lists the index again: a session a request
        in flight regenerated meanwhile was indexed before its old record was
        retired, so the next pass finds it.
        """
        keep_keys = self._keys_of(keep)
        revoked = 0
        for _ in range(MAX_REVOKE_PASSES):
            entries = [
                (digest, key)
                for digest in self.tracking.hasher.digests(owner)
                for key in self.index.owned(digest)
                if key not in keep_keys
            ]
            if not entries:
                break
            for digest, key in entries:
                revoked += self._end(key, digest)
                self.index.unindex_owner(digest, key)
        self.metrics.revoked(revoked)
        if self.audit is not None:
            self.audit.event("revoked", self.tracking.hasher.digest(owner), count=revoked)
        return revoked

    def revoke_one(self, handle: str, owner: object) -> bool:
        """End the session ``handle`` (from :meth:`of`) names, if it is ``owner``'s.

        ``False`` if it was not live, if the handle was listed for another
        owner, or if the session no longer belongs to ``owner`` (its user
        logged out and another logged in under the same id): an endpoint
        that signs out "this device" ends only the current user's sessions.
        """
        if not handle.isascii():
            return False
        key, _, signature = handle.partition(".")
        for digest in self.tracking.hasher.digests(owner):
            if self.handles.verify(f"{key}.{digest}", signature) is not None:
                ended = self._end(key, digest)
                self.index.unindex_owner(digest, key)
                self.metrics.revoked(ended)
                if self.audit is not None:
                    self.audit.event("revoked", digest, count=ended)
                return ended > 0
        return False

    def _handle(self, key: str, digest: str) -> str:
        """The handle of the session at ``key``, listed for the owner hashed ``digest``.

        The owner's hash is signed with the key but not carried: only a caller
        who names the owner (:meth:`revoke_one`) can use it.
        """
        signature = self.handles.sign(f"{key}.{digest}").rpartition(".")[2]
        return f"{key}.{signature}"

    def _end(self, key: str, digest: str) -> int:
        """Delete ``key``'s record if ``digest`` owns it (or where it forwards); 1 if live.

        A stale entry, whose record now belongs to someone else, deletes nothing.
        """
        record = self._record(key)
        if record is None:
            return 0
        if record.forward_id is not None:
            # A sealed forward names its new record only to the old id: that
            # record was indexed before this one was retired, so a later pass
            # of revoke finds it.
            self.store.delete(key)
            return 0
        if record.forward is not None:
            # Retired by a regeneration in flight: the session lives on there.
            target = self._record(record.forward)
            self.store.delete(key)
            if target is None or target.owner is None or target.owner.digest != digest:
                return 0
            self.store.delete(record.forward)
            return 1
        if record.owner is None or record.owner.digest != digest:
            return 0
        self.store.delete(key)
        return 0 if record.text == EMPTY else 1

    def _record(self, key: str) -> Record | None:
        found = self.store.load(key)
        return Record.header(found[0]) if found is not None else None

    def _live(self, owner: object) -> list[tuple[str, Record]]:
        """``(key, record)`` of each live session of ``owner``; prunes stale entries."""
        now = self.lifetime.clock()
        live = []
        for digest in self.tracking.hasher.digests(owner):
            for key in self.index.owned(digest):
                record = self._record(key)
                if (
                    record is None
                    or record.owner is None
                    or record.owner.digest != digest
                    or record.text == EMPTY
                    or self.lifetime.remaining(
                        record.created, record.accessed, record.idle_timeout, now
                    )
                    <= 0
                ):
                    if record is None or not record.retired:  # a move in flight: its own
                        self.index.unindex_owner(digest, key)
                    continue
                live.append((key, record))
        return live

    def _keys_of(self, session: Session | object) -> set[str]:
        """The store keys ``session`` has in this request: the loaded id's and a new one's."""
        if not isinstance(session, Session):
            # A view of it (flask.session, Django's request.session, the engine's):
            # each holds the request's Session as ``raw``.
            session = getattr(session, "raw", None)
        if not isinstance(session, Session):
            return set()
        return {self.store_key(session.origin.id), self.store_key(session.id)}
