"""The bulk copy between two stores of ours: ``wsgi-session migrate --from URL --to URL``.

Every live record of the source goes to the target byte for byte under its
own key (a hash of its id, so sealed records still open), with the time it
has left. Safe while the application serves: a record is created only where
the target has none, and replaces one only if the target's is older (by its
last access) and unchanged since it was read (compare-and-set), so a session
the application already wrote there is never overwritten. A copied session
with an owner is listed under it where the target keeps an owner index. Running it again
copies nothing twice; ``after`` resumes after the last key a stopped run did.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from wsgi_session.migrate.base import MARK
from wsgi_session.record import Record
from wsgi_session.stores.base import OwnerIndex, Store


@dataclass
class Summary:
    """What a copy did, record by record."""

    copied: int = 0
    newer: int = 0  # skipped: the target's was as new or newer
    expired: int = 0  # skipped: past its time, or a regenerated session's forward
    unreadable: int = 0  # skipped: not a record this version reads
    last_key: str | None = field(default=None, repr=False)

    @property
    def seen(self) -> int:
        return self.copied + self.newer + self.expired + self.unreadable

    def __str__(self) -> str:
        return (
            f"copied {self.copied}, skipped as newer {self.newer}, "
            f"expired {self.expired}, unreadable {self.unreadable}"
        )


Progress = Callable[[Summary], None]


def copy_records(
    records: Iterable[tuple[str, bytes, float]],
    target: Store,
    *,
    after: str | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Copy ``records`` (a ``KeyedScan``'s ``scan(after)``) into ``target`` (see the module)."""
    summary = Summary(last_key=after)
    for key, data, left in records:
        _copy_one(target, key, data, left, summary)
        summary.last_key = key
        if progress is not None:
            progress(summary)
    return summary


def _copy_one(target: Store, key: str, data: bytes, left: float, summary: Summary) -> None:
    if left <= 0:
        summary.expired += 1
        return
    mark = data[:3] == MARK + b" "
    record = None if mark else Record.header(data)
    if not mark and record is None:
        summary.unreadable += 1
        return
    if record is not None and record.retired:
        summary.expired += 1  # a forward lives minutes: the session is under its new key
        return
    ttl = max(1, math.ceil(left))
    if target.save(key, data, ttl, None):
        summary.copied += 1
        _index(target, key, record)
        return
    found = target.load(key)
    if found is None:  # it expired or was deleted meanwhile: once more, create-only
        if target.save(key, data, ttl, None):
            summary.copied += 1
            _index(target, key, record)
        else:
            summary.newer += 1
        return
    theirs = None if mark else Record.header(found[0])
    if theirs is None or record is None or theirs.accessed >= record.accessed:
        summary.newer += 1  # written by the application already (or a mark: kept)
    elif target.save(key, data, ttl, found[1]):
        summary.copied += 1
        _index(target, key, record)
    else:
        summary.newer += 1  # the application wrote it just now


def _index(target: Store, key: str, record: Record | None) -> None:
    """List a copied session under its owner, as its header says, where the target indexes."""
    owner = None if record is None else record.owner
    if owner is not None and isinstance(target, OwnerIndex):
        target.index_owner(owner.digest, key, owner.indexed_until)
