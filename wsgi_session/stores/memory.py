"""An in-process store for tests and single-process servers."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

from wsgi_session.stores.base import Version


class MemoryStore:
    """Records in a dict guarded by a lock; expired records vanish on access.

    Every process has its own dict, so it is only right for one process
    (tests, ``wsgi-session demo``, a single-worker server).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._records: dict[str, tuple[bytes, int, float]] = {}
        self._lock = threading.Lock()
        self._versions = itertools.count(1)
        self._owners: dict[str, dict[str, int]] = {}  # owner -> {key: until}

    def load(self, key: str) -> tuple[bytes, Version] | None:
        # Read without the lock: a dict lookup is atomic, and a record is an
        # immutable tuple replaced whole by save(), so the lookup sees one
        # record or the other, never half of one. Only an expired record takes
        # the lock, to drop it (unless a save replaced it meanwhile).
        record = self._records.get(key)
        if record is not None and record[2] <= (now := self.clock()):
            with self._lock:
                record = self._live(key, now)
        return None if record is None else (record[0], record[1])

    def save(self, key: str, data: bytes, ttl: int, version: Version | None = None) -> bool:
        now = self.clock()  # once, for the expiry check and the new expiry (every write)
        with self._lock:
            record = self._live(key, now)
            if record is None:
                if version is not None:
                    return False
            elif record[1] != version:
                return False
            self._records[key] = (data, next(self._versions), now + ttl)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    # -- the OwnerIndex protocol: a dict of dicts ------------------------------

    def index_owner(self, owner: str, key: str, until: int) -> None:
        with self._lock:
            entries = self._live_entries(owner)
            entries[key] = until
            self._owners[owner] = entries

    def unindex_owner(self, owner: str, key: str) -> None:
        with self._lock:
            entries = self._owners.get(owner, {})
            entries.pop(key, None)
            if not entries:
                self._owners.pop(owner, None)

    def owned(self, owner: str) -> list[str]:
        with self._lock:
            entries = self._live_entries(owner)
            if entries:
                self._owners[owner] = entries
            else:
                self._owners.pop(owner, None)
            return list(entries)

    def _live_entries(self, owner: str) -> dict[str, int]:
        now = self.clock()
        return {key: until for key, until in self._owners.get(owner, {}).items() if until > now}

    def purge_expired(self) -> int:
        """Drop expired records; returns how many."""
        now = self.clock()
        with self._lock:
            expired = [key for key, (_, _, expires) in self._records.items() if expires <= now]
            for key in expired:
                del self._records[key]
        return len(expired)

    # -- the KeyedScan protocol (the bulk copy) -----------------------------

    def scan(self, after: str | None = None) -> Iterator[tuple[str, bytes, float]]:
        with self._lock:
            keys = sorted(key for key in self._records if after is None or key > after)
        now = self.clock()
        for key in keys:
            record = self._records.get(key)
            if record is not None:
                yield key, record[0], record[2] - now

    def count(self) -> int:
        return len(self._records)

    def __len__(self) -> int:
        now = self.clock()
        with self._lock:
            return sum(1 for _, _, expires in self._records.values() if expires > now)

    def _live(self, key: str, now: float) -> tuple[bytes, int, float] | None:
        record = self._records.get(key)
        if record is not None and record[2] <= now:
            del self._records[key]
            return None
        return record
