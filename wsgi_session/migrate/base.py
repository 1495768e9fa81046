"""What a migration source hands over: a :class:`Claim` on an old session, and :class:`Source`.

A source is the system being replaced (Flask's cookie sessions, Flask-Session,
a Django engine, one of our own stores), read with that system's own rules:
:meth:`Source.identify` checks an old cookie without any I/O (a signature,
an id's format) and names the old session it is for, :meth:`Source.claim`
reads that session,
:meth:`Source.retire` deletes it once it lives on under a new id. The
adoption itself (a new id, at most once, the grace window) is the server-side
backend's (:mod:`wsgi_session.backends.adoption`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable


class OldCookie(NamedTuple):
    """The old system's cookie: expired after adoption where it is not ours by name and path.

    ``path`` ``None``: the application's mount point, as ours; ``domain``
    ``None``: the request's host only.
    """

    name: str
    path: str | None = None
    domain: str | None = None


@dataclass(frozen=True)
class Claim:
    """An old session the old system accepts, as it stands now.

    ``remaining``: seconds the old session had left (``None``: the old system
    does not say, so ours apply); ``created``: when it began, if the old
    system kept it (for ``absolute_timeout``). ``handle`` is the source's own:
    what :meth:`Source.retire` deletes.
    """

    data: dict[str, Any]
    permanent: bool
    remaining: float | None
    cookie: OldCookie | None = None
    created: float | None = None
    handle: object = field(default=None, repr=False, compare=False)


@runtime_checkable
class Source(Protocol):
    """The system being replaced, as seen by adoption.

    Every method raises :class:`~wsgi_session.errors.StoreUnavailable` when the
    old system's server cannot be reached, so an outage answers 503.
    """

    description: str  # what logs and ``wsgi-session check`` show: no password, no secret
    cookie: OldCookie | None  # the cookie it reads; None: ours (same name, same path)

    def identify(self, cookie: str) -> str | None:
        """The old session ``cookie`` names, decided without any I/O; ``None``: not one.

        ``None`` for anything the old system would refuse, and for any spelling
        of a cookie but the one the old system issued: an old session is
        adopted at most once, and adoption remembers it by this identity (its
        id, or the canonical cookie where the cookie is the session).
        """
        ...

    def claim(self, cookie: str) -> Claim | None:
        """The old session ``cookie`` names under the old system's rules; ``None``: none.

        An unreadable old record (a pickle, a format this version does not
        know) is ``None`` and a warning, never an exception.
        """
        ...

    def retire(self, claim: Claim) -> None:
        """Delete the old session, so the old cookie cannot be replayed on the old system."""
        ...

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the old system's server answers (for ``check``)."""
        ...


@dataclass(frozen=True)
class Host:
    """What a source may need of the deployment adopting its sessions.

    ``secret_key`` and ``fallback_keys``: the application's secrets (Flask
    signs its cookies with the same ``SECRET_KEY``; our own old deployment
    signed its ids with them); ``cookie``: the new session cookie's name, path
    and domain, which an old system configured by the same settings shares;
    ``lifetime``: the idle timeout here, in seconds (what an old system
    configured by the same settings used too); ``clock``: the time.
    """

    secret_key: bytes
    fallback_keys: tuple[bytes, ...]
    cookie: OldCookie
    lifetime: int
    clock: Callable[[], float] = time.time


# The format of an adoption's mark in our store (backends/adoption.py): never a
# record's (records start with a digit and a space). The bulk copy carries marks over.
MARK = b"A1"

SourceFactory = Callable[[Host], Source]
"""A source not yet bound to a deployment: what ``migrate_from`` URLs parse into."""


def unreadable(description: str, why: str) -> None:
    """Log an old session that could not be read: it becomes a fresh session, never an error."""
    logging.getLogger("wsgi_session").warning(
        "old session from %s is unreadable (%s): the request starts a fresh session",
        description,
        why,
    )
