"""The request's session: a dict that loads itself lazily and knows what changed."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from wsgi_session.cookies import encode_canonical
from wsgi_session.errors import SessionSealed
from wsgi_session.owner import Owner
from wsgi_session.serialization import EMPTY as EMPTY  # re-exported for the decision module
from wsgi_session.serialization import PLAIN_TYPES, dumps, loads

ID_BYTES = 32  # 256 random bits
ID_LENGTH = -(-ID_BYTES * 4 // 3)  # characters of unpadded URL-safe base64: 43


def new_session_id() -> str:
    """256 random bits, URL-safe text of ``ID_LENGTH`` characters."""
    # secrets.token_urlsafe's text (unpadded URL-safe base64) of secrets' bytes,
    # without its base64 module frames: every new visitor and every regenerate makes one.
    return encode_canonical(secrets.token_bytes(ID_BYTES))


@dataclass
class Origin:
    """What a backend found for this request, and what it needs back on commit."""

    id: str
    new: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    text: str = EMPTY  # the data exactly as loaded: unchanged text means nothing to save
    created: float = 0.0
    accessed: float = 0.0  # when the record was last written
    permanent: bool = False
    idle_timeout: int | None = None  # per-session override of the middleware's timeout
    version: object | None = None  # the store's compare-and-set token
    # The cookie verified but names no live session (expired, emptied, deleted,
    # regenerated away): expire it. One that did not verify is left alone, since
    # a server holding the right key (a rolling deploy) may still find its session.
    stale_cookie: bool = False
    resign: bool = False  # the cookie verified with a fallback key: send a fresh one
    degraded: bool = False  # the store was down; writes are dropped (on_store_error="degrade")
    # The backend's handle on the loaded record, for the commit (server-side: its
    # store key, or the slot holding a sealed record's key: each derived once per request).
    found_at: object | None = None
    owner: Owner | None = None  # who the stored session belongs to, as its record says
    client: tuple[str, str] | None = None  # this request's (user agent, address): record_client
    # The signed-id cookie it was loaded from, as the client sent it (server-side
    # backend): a write under the same id, verified with the current key, re-sends
    # it instead of signing the id again (the signature would be the same bytes).
    cookie: str | None = None

    @classmethod
    def fresh(cls, now: float, *, stale_cookie: bool = False, degraded: bool = False) -> Origin:
        """A new, empty session with a new id, starting ``now``."""
        # Positionally, in field order, as Record.origin does (every new visitor):
        # id, new, data, text, created, accessed, permanent, idle_timeout, version,
        # stale_cookie, resign, degraded.
        return cls(
            new_session_id(),
            True,
            {},
            EMPTY,
            now,
            now,
            False,
            None,
            None,
            stale_cookie,
            False,
            degraded,
        )


Opener = Callable[[], Origin]


class Session(MutableMapping[str, Any]):
    """The request's session data, loaded on first access."""

    __slots__ = (
        "_changed_keys",
        "_complete",
        "_destroyed",
        "_forced",
        "_id",
        "_idle_timeout",
        "_maybe_changed",
        "_opener",
        "_origin",
        "_permanent",
        "_sealed",
        "_values",
    )

    def __init__(self, opener: Opener) -> None:
        # The rest is set by _load: most requests never use their session.
        self._opener = opener
        self._origin: Origin | None = None
        self._sealed = False
        # _complete is set by an adapter only (see complete_after_seal), and read
        # only at a change after the seal: unset until then, at no cost to a request.
        # Set by the first change of any kind (every one goes through
        # _check_open): until then nothing differs from the origin, and the
        # commit of a read need not compare (see unchanged).
        self._maybe_changed = False

    # -- loading ---------------------------------------------------------

    def _load(self) -> Origin:
        origin = self._origin
        if origin is None:
            origin = self._origin = self._opener()
            # Done with: the opener is the middleware's (it holds the environ,
            # which holds this session), so dropping it breaks that cycle, and
            # the request's objects go with its last reference instead of
            # waiting for the garbage collector.
            del self._opener
            self._values: dict[str, Any] = origin.data
            self._id = origin.id
            self._permanent = origin.permanent
            self._idle_timeout: int | None = origin.idle_timeout
            self._changed_keys: set[str] = set()
            self._forced = False
            self._destroyed = False
        return origin

    def _data(self) -> dict[str, Any]:
        if self._origin is None:
            self._load()
        return self._values

    @property
    def accessed(self) -> bool:
        """True once anything read or wrote the session in this request."""
        return self._origin is not None

    @property
    def origin(self) -> Origin:
        """What the backend loaded (loads it if nothing has yet)."""
        # Asked several times by every commit: skip the call once loaded.
        return self._origin or self._load()

    # -- identity and lifetime -------------------------------------------

    @property
    def id(self) -> str:
        """The session id (new after :meth:`regenerate`); never put it in a page or URL."""
        if self._origin is None:
            self._load()
        return self._id

    @property
    def new(self) -> bool:
        """True when no stored session backs this one (yet)."""
        return self._load().new

    @property
    def permanent(self) -> bool:
        """Whether the cookie outlives the browser session (sent with Max-Age)."""
        if self._origin is None:
            self._load()
        return self._permanent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self._check_open()
        self._load()
        self._permanent = bool(value)

    @property
    def idle_timeout(self) -> int | None:
        """This session's own idle timeout in seconds; ``None``: the middleware's."""
        if self._origin is None:
            self._load()
        return self._idle_timeout

    @idle_timeout.setter
    def idle_timeout(self, seconds: int | None) -> None:
        self._check_open()
        self._load()
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0
        ):
            raise ValueError(f"idle_timeout must be a whole number of seconds > 0, not {seconds!r}")
        self._idle_timeout = seconds

    def regenerate(self) -> None:
        """Give the session a new id, keeping its data (call it on login).

        The old record is retired when the response is committed, so an id an
        attacker planted before login is worthless afterwards.
        """
        self._check_open()
        self._load()
        self._id = new_session_id()
        self._forced = True

    def destroy(self) -> None:
        """Delete the stored session and expire the cookie (call it on logout).

        Data set afterwards in the same request starts a new session under a
        new id.
        """
        self._check_open()
        self._load()
        self._values = {}
        self._destroyed = True
        self._changed_keys.clear()
        self._id = new_session_id()
        self._permanent = False
        self._idle_timeout = None

    def created_at(self, now: float) -> float:
        """When the session began: ``now`` if this request starts it afresh."""
        origin = self._origin or self._load()
        return now if origin.new or self._destroyed else origin.created

    @property
    def destroyed(self) -> bool:
        """True once :meth:`destroy` was called in this request."""
        return self._origin is not None and self._destroyed

    # -- change tracking -------------------------------------------------

    @property
    def modified(self) -> bool:
        """True when this request changed the session (nested mutations included)."""
        return self._origin is not None and self.differs_from_origin(self.serialize())

    @modified.setter
    def modified(self, value: bool) -> None:
        self._check_open()
        self._load()  # only an accessed session is committed: the forced save must not vanish
        self._forced = bool(value)

    def differs_from_origin(self, text: str) -> bool:
        """Whether the session, whose data serializes to ``text``, needs saving."""
        # The text first: on a write it differs, and comparing is cheaper than the call.
        return text != (self._origin or self._load()).text or self._changed_explicitly()

    def unchanged(self) -> bool:
        """True when this request certainly changed nothing, found without serializing.

        ``False`` means "perhaps": a list or dict may have been mutated in place,
        which only comparing the serialized text can tell.
        """
        if self._origin is None:
            return True
        if self._maybe_changed and self._changed_explicitly():
            return False
        # Asked on every request that used its session: a set operation, no generator.
        return PLAIN_TYPES.issuperset(map(type, self._values.values()))

    def _changed_explicitly(self) -> bool:
        origin = self._origin or self._load()
        return (
            self._forced
            or bool(self._changed_keys)
            or self._destroyed
            or self._id != origin.id
            or self._permanent != origin.permanent
            or self._idle_timeout != origin.idle_timeout
        )

    def serialize(self) -> str:
        """The data as tagged JSON; ``TypeError`` names a value that cannot be stored."""
        if self._origin is None:  # _data(), inlined: every write serializes
            self._load()
        return dumps(self._values)

    def changes(self) -> tuple[dict[str, Any], set[str]]:
        """``(set, deleted)``: what this request changed relative to what it loaded.

        A key counts as set when it was assigned or when its value differs from
        the loaded one (an appended list); used to merge into a newer record.
        """
        origin = self._load()
        before = loads(origin.text)
        changed: dict[str, Any] = {}
        for key, value in self._values.items():
            if (
                key in self._changed_keys
                or key not in before
                or dumps({key: value}) != dumps({key: before[key]})
            ):
                changed[key] = value
        return changed, set(before) - set(self._values)

    def seal(self) -> None:
        """Refuse further changes: the response headers are on their way."""
        self._sealed = True

    def complete_after_seal(self, complete: Callable[[Session], bool]) -> None:
        """Let a change after the seal through if ``complete(self)`` says the response is done.

        For an adapter whose framework runs code after the response started that
        is no part of it (Flask's ``teardown_request``, the context its test
        client keeps after a request): asked at such a change, whether the
        response still runs application code (a streamed body). If not, the
        change goes ahead and stays in this object: nothing commits it, as
        nothing commits a change made then to the framework's own session.
        """
        self._complete = complete

    def _check_open(self) -> None:
        """Called before every change: refuse it once sealed, else note it may differ now."""
        if self._sealed:
            complete = getattr(self, "_complete", None)  # see complete_after_seal
            if complete is None or not complete(self):
                raise SessionSealed(
                    "the session was changed after the response headers were sent; "
                    "change it before start_response is called"
                )
            self._sealed = False  # the response is complete: changes stay here
        self._maybe_changed = True

    def _write(self, key: str) -> None:
        self._check_open()
        if self._origin is None:
            self._load()
        self._changed_keys.add(key)

    # -- mapping interface -----------------------------------------------

    # The reads check for the load themselves: one call less on the hottest path.
    def __getitem__(self, key: str) -> Any:
        if self._origin is None:
            self._load()
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._write(key)
        self._values[key] = value

    def __delitem__(self, key: str) -> None:
        self._write(key)
        del self._values[key]

    def __contains__(self, key: object) -> bool:
        if self._origin is None:
            self._load()
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def get(self, key: str, default: Any = None) -> Any:
        if self._origin is None:
            self._load()
        return self._values.get(key, default)

    def clear(self) -> None:
        self._check_open()
        data = self._data()
        self._changed_keys.update(data)
        data.clear()

    def __repr__(self) -> str:
        if self._origin is None:
            return "<Session (not loaded)>"
        return f"<Session {self._values!r}>"
