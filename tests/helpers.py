"""Shared pieces for the HTTP-level tests: small WSGI apps, a clock, a counting store."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from werkzeug.test import Client, TestResponse

from wsgi_session import MemoryStore, Session, SessionMiddleware, StoreUnavailable
from wsgi_session.cookies import KeyRing
from wsgi_session.record import Record
from wsgi_session.sealing import RecordLock, RecordSealer
from wsgi_session.serialization import EMPTY, loads
from wsgi_session.stores.base import Store, Version

SECRET = "test-secret-0123456789abcdef0123456789abcdef"
START = 1_700_000_000.0

Action = Callable[[Session], Any]
StartResponse = Callable[..., Any]
Environ = dict[str, Any]


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingStore:
    """A real :class:`MemoryStore` that counts the calls made to it.

    ``fail`` is fault injection: the operations named there raise ``error``
    (``StoreUnavailable``), which a healthy in-process store never does on its own.
    """

    def __init__(self, inner: Store | None = None) -> None:
        self.inner = inner if inner is not None else MemoryStore()
        self.calls: Counter[str] = Counter()
        self.fail: set[str] = set()
        self.error: type[Exception] = StoreUnavailable

    def _call(self, operation: str) -> None:
        self.calls[operation] += 1
        if operation in self.fail:
            raise self.error(f"injected fault: {operation} failed")

    def load(self, key: str) -> tuple[bytes, Version] | None:
        self._call("load")
        return self.inner.load(key)

    def save(self, key: str, data: bytes, ttl: int, version: Version | None = None) -> bool:
        self._call("save")
        return self.inner.save(key, data, ttl, version)

    def delete(self, key: str) -> None:
        self._call("delete")
        self.inner.delete(key)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class CountingIndexStore(CountingStore):
    """A :class:`CountingStore` that is an ``OwnerIndex`` too, counting those calls as well.

    ``inner``: any store that keeps an owner index (default: a ``MemoryStore``).
    """

    inner: Any

    def __init__(self, inner: Any = None) -> None:
        super().__init__(inner if inner is not None else MemoryStore())

    def index_owner(self, owner: str, key: str, until: int) -> None:
        self._call("index_owner")
        self.inner.index_owner(owner, key, until)

    def unindex_owner(self, owner: str, key: str) -> None:
        self._call("unindex_owner")
        self.inner.unindex_owner(owner, key)

    def owned(self, owner: str) -> list[str]:
        self._call("owned")
        return self.inner.owned(owner)


def store_key(session_id: str) -> str:
    """What the store is expected to be keyed by: a SHA-256 of the id."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def record_lock(session_id: str, secret: str = SECRET) -> RecordLock:
    """What opens ``session_id``'s sealed record: its id and the secret (the cookie's holder)."""
    return RecordSealer(KeyRing(secret)).lock(session_id, store_key(session_id))


def stored_record(store: CountingStore, session_id: str) -> Record | None:
    """The record kept for ``session_id`` (sealed or not), read without counting."""
    found = store.inner.load(store_key(session_id))
    if found is None:
        return None
    record = Record.decode(found[0], record_lock(session_id))
    assert record is not None, found[0]
    return record


def stored_data(store: CountingStore, session_id: str) -> dict[str, Any] | None:
    """The session data kept for ``session_id`` (``None``: no live session record)."""
    record = stored_record(store, session_id)
    if record is None or record.retired or record.text == EMPTY:
        return None  # an emptied record loads as no session
    return loads(record.text)


@dataclass
class SetCookie:
    """One parsed Set-Cookie header: value and attributes (names lower-cased)."""

    name: str
    value: str
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def expires_now(self) -> bool:
        return self.attrs.get("max-age") == "0"

    @property
    def session_id(self) -> str:
        return session_id_of(self.value)


def session_id_of(cookie: str) -> str:
    """The session id a server-side cookie names (marked ``.b`` or not: backends/server.py)."""
    return cookie.split(".", 1)[0]


def parse_set_cookie(header: str) -> SetCookie:
    pair, *attributes = (part.strip() for part in header.split(";"))
    name, _, value = pair.partition("=")
    attrs = {}
    for attribute in attributes:
        key, _, attr_value = attribute.partition("=")
        attrs[key.lower()] = attr_value
    return SetCookie(name, value, attrs)


def set_cookies(response: TestResponse) -> list[SetCookie]:
    return [parse_set_cookie(header) for header in response.headers.getlist("Set-Cookie")]


def one_cookie(response: TestResponse) -> SetCookie:
    cookies = set_cookies(response)
    assert len(cookies) == 1, cookies
    return cookies[0]


def session_app(routes: dict[str, Action]) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """A WSGI app: ``/<name>`` runs ``routes[name](session)`` and answers with its repr."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        action = routes[environ["PATH_INFO"].strip("/")]
        result = action(environ["wsgi_session"])
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [repr(result).encode()]

    return app


def dump(session: Session) -> dict[str, Any]:
    return dict(session)


def setter(**values: Any) -> Action:
    def action(session: Session) -> None:
        session.update(values)

    return action


ROUTES: dict[str, Action] = {
    "nothing": lambda session: None,
    "read": dump,
    "id": lambda session: session.id,
    "set": setter(user="alice"),
    "set2": setter(cart=[1, 2]),
    "clear": lambda session: session.clear(),
    "destroy": lambda session: session.destroy(),
    "regenerate": lambda session: session.regenerate(),
    "permanent": lambda session: setattr(session, "permanent", True),
}


def make(
    routes: dict[str, Action] | None = None,
    store: CountingStore | None = None,
    **options: Any,
) -> tuple[Client, SessionMiddleware, CountingStore]:
    """A client for ``SessionMiddleware`` around :func:`session_app` with a counting store."""
    store = store if store is not None else CountingStore()
    options.setdefault("secret_key", SECRET)
    middleware = SessionMiddleware(
        session_app({**ROUTES, **(routes or {})}), store=store, **options
    )
    return Client(middleware), middleware, store


class ClosingBody:
    """A response body that records whether the server called ``close()``."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = list(chunks)
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


def calls_to(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[tuple[Any, ...]]:
    """The arguments of every call to ``owner.name`` from now on; the real one still runs."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls
