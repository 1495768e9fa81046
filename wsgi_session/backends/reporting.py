"""What a backend reports to the metrics and the audit log, put in place only when one is on.

Off, a backend decides and executes with the plain functions and its store is
the store itself: not one call or check is added to a request. On,
:meth:`BaseBackend.report_to <wsgi_session.backends.base.BaseBackend.report_to>`
puts :class:`Reporting`'s ``decide`` and ``carry_out`` in their place, and
the server-side backend calls the store through a :class:`MeteredStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter as clock
from typing import Protocol

from wsgi_session.backends.owners import OwnerTracking
from wsgi_session.decision import Outcome, Plan, decide
from wsgi_session.lifetime import Lifetime
from wsgi_session.metrics.audit import AuditEvent, AuditLog
from wsgi_session.metrics.base import Metrics, RequestKind
from wsgi_session.owner import MAX_AGENT, Owner, coarse_address
from wsgi_session.session import Origin, Session
from wsgi_session.stores.base import IndexedWrites, OwnerIndex, Store, Version

# What each plan did with the session, as the requests metric says it.
REQUEST_KIND: dict[str, RequestKind] = {
    "resend": "read",
    "refresh": "read",
    "expire": "read",  # a cookie that named no live session: nothing to delete
    "create": "created",
    "update": "updated",
    "move": "moved",
    "delete": "deleted",
}
WRITES = frozenset({"refresh", "create", "update", "move", "delete"})


class Reporting:
    """One backend's reporting ``decide`` and ``carry_out`` (its ``execute``)."""

    def __init__(
        self,
        execute: Callable[[Plan], Outcome],
        metrics: Metrics,
        audit: AuditLog | None,
        owners: OwnerTracking | None,
    ) -> None:
        self.execute = execute
        self.count_request = metrics.request
        self.count_write = metrics.write
        self.audit = audit
        self.owners = owners

    def decide(
        self, session: Session, origin: Origin, lifetime: Lifetime, now: float
    ) -> Plan | None:
        plan = decide(session, origin, lifetime, now)
        if plan is None:
            self.count_request("read")
        return plan

    def carry_out(self, plan: Plan) -> Outcome:
        outcome = self.execute(plan)
        action = plan.action
        self.count_request(REQUEST_KIND[action])
        if action in WRITES:
            self.count_write(outcome)
            if self.audit is not None and outcome == "written":
                self._audit(plan)
        return outcome

    def _audit(self, plan: Plan) -> None:
        session = plan.session
        audit = self.audit
        assert audit is not None
        action = plan.action
        if action == "delete" or (action == "move" and session.destroyed):
            audit.event("destroyed", *self._before(session.origin))
            if action == "move":  # destroyed, then given new data: a new session
                audit.event("created", *self._after(session))
        elif action in ("create", "move"):
            event: AuditEvent = "created" if action == "create" else "regenerated"
            audit.event(event, *self._after(session))

    def _before(self, origin: Origin) -> tuple[str | None, tuple[str, str]]:
        """The owner and client the loaded record kept."""
        owner = origin.owner
        if owner is None or self.owners is None:
            return None, ("", "")
        return owner.digest, self.owners.client_of(owner)

    def _after(self, session: Session) -> tuple[str | None, tuple[str, str]]:
        """The owner and client the record just written keeps (as the owner index does)."""
        owners = self.owners
        if owners is None:
            return None, ("", "")
        value = session.get(owners.owner_key)
        if value is None:
            return None, ("", "")
        digest = owners.hasher.digest(value)
        client = session.origin.client
        if client is not None:  # recorded by this request (record_client)
            return digest, (client[0][:MAX_AGENT], coarse_address(client[1]))
        previous: Owner | None = session.origin.owner
        if previous is not None and previous.digest == digest:
            return digest, owners.client_of(previous)
        return digest, ("", "")


def store_label(store: object) -> str:
    """The store's metrics label: its class name, lower case, without ``Store``."""
    name = type(store).__name__
    return (name[: -len("Store")] if name.endswith("Store") and name != "Store" else name).lower()


class MeteredStore:
    """A store whose every call is timed and reported (``Store`` protocol)."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        label = store_label(store)
        self.timed_load = metrics.store_timer(label, "load")
        self.timed_save = metrics.store_timer(label, "save")
        self.timed_delete = metrics.store_timer(label, "delete")
        if isinstance(store, OwnerIndex):
            self.timed_index_owner = metrics.store_timer(label, "index_owner")
            self.timed_unindex_owner = metrics.store_timer(label, "unindex_owner")
            self.timed_owned = metrics.store_timer(label, "owned")

    def __repr__(self) -> str:
        return repr(self.store)

    def load(self, key: str) -> tuple[bytes, Version] | None:
        started = clock()
        try:
            return self.store.load(key)
        finally:
            self.timed_load(clock() - started)

    def save(self, key: str, data: bytes, ttl: int, version: Version | None = None) -> bool:
        started = clock()
        try:
            return self.store.save(key, data, ttl, version)
        finally:
            self.timed_save(clock() - started)

    def delete(self, key: str) -> None:
        started = clock()
        try:
            self.store.delete(key)
        finally:
            self.timed_delete(clock() - started)


class MeteredOwnerStore(MeteredStore):
    """A metered store that keeps an owner index (``OwnerIndex`` protocol) too."""

    store: OwnerStore

    def index_owner(self, owner: str, key: str, until: int) -> None:
        started = clock()
        try:
            self.store.index_owner(owner, key, until)
        finally:
            self.timed_index_owner(clock() - started)

    def unindex_owner(self, owner: str, key: str) -> None:
        started = clock()
        try:
            self.store.unindex_owner(owner, key)
        finally:
            self.timed_unindex_owner(clock() - started)

    def owned(self, owner: str) -> list[str]:
        started = clock()
        try:
            return self.store.owned(owner)
        finally:
            self.timed_owned(clock() - started)


class OwnerStore(Store, OwnerIndex, Protocol):
    """A store with an owner index."""


class IndexedOwnerStore(OwnerStore, IndexedWrites, Protocol):
    """A store with an owner index that it writes with the record (``IndexedWrites``)."""


class MeteredIndexedStore(MeteredOwnerStore):
    """A metered store that writes a record and its index entry together: timed as the write."""

    store: IndexedOwnerStore

    def save_indexed(
        self, key: str, data: bytes, ttl: int, version: Version | None, owner: str, until: int
    ) -> bool:
        started = clock()
        try:
            return self.store.save_indexed(key, data, ttl, version, owner, until)
        finally:
            self.timed_save(clock() - started)

    def delete_indexed(self, key: str, owner: str) -> None:
        started = clock()
        try:
            self.store.delete_indexed(key, owner)
        finally:
            self.timed_delete(clock() - started)


def metered(store: Store, metrics: Metrics) -> Store:
    """``store`` with its calls reported to ``metrics``; the store itself when they are off.

    The optional capabilities (the owner index, indexed writes) stay detectable on the
    metered store.
    """
    if not metrics.enabled:
        return store
    if isinstance(store, OwnerIndex):
        if isinstance(store, IndexedWrites):
            return MeteredIndexedStore(store, metrics)
        return MeteredOwnerStore(store, metrics)
    return MeteredStore(store, metrics)
