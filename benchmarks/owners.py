"""What keeping the per-user owner index costs a request: ``python -m benchmarks.owners``.

The same requests, in the same run, through two middlewares on one store:
one with ``owner_key`` (the index kept), one without. Rounds alternate between
the two so that the machine's load falls on both alike. Prints, per store and
request kind, the store calls a request makes (counted in a separate pass,
through a counting wrapper) and the median µs.

- read: a logged-in session read, nothing changed
- write: a logged-in session changed (a key set)
- login: a new session gets an owner under a new id (the index is written)
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks import servers
from benchmarks.apps import environ
from benchmarks.timing import Capture, median_us, request, sample_wsgi
from wsgi_session import MemcachedStore, MemoryStore, SessionMiddleware, SQLiteStore
from wsgi_session.config import store_from_url

SECRET = "owners-benchmark-secret-0123456789abcdef0123456789"
OWNER_KEY = "user"
KINDS = ("read", "write", "login")
STORES = ("memory", "sqlite", "memcached", "redis")


users = itertools.count()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = environ["wsgi_session"]
    path = environ["PATH_INFO"]
    if path == "/read":
        session.get(OWNER_KEY)
    elif path == "/write":
        session["n"] = session.get("n", 0) + 1
    elif path in ("/login", "/seed"):
        session.regenerate()
        session[OWNER_KEY] = f"user-{next(users)}"  # a user logs in from a few places, not 1000s
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


class Counting:
    """Forwards every call to ``store`` and counts it (the counting pass only)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


def middleware(store: Any, owned: bool) -> SessionMiddleware:
    # refresh_interval: the default, so a read writes nothing.
    return SessionMiddleware(app, SECRET, store=store, owner_key=OWNER_KEY if owned else None)


def requests_for(kind: str, wsgi: SessionMiddleware, count: int) -> list[dict[str, Any]]:
    """``count`` environs of ``kind``: reads and writes on logged-in sessions, logins fresh."""
    if kind == "login":
        return [environ("/login") for _ in range(count)]
    cookies = [request(wsgi, environ("/seed")).cookie() for _ in range(8)]
    return [environ(f"/{kind}", cookies[index % len(cookies)]) for index in range(count)]


def calls_per_request(store: Any, owned: bool, kind: str) -> dict[str, int]:
    counting = Counting(store)
    wsgi = middleware(counting, owned)
    (env,) = requests_for(kind, wsgi, 1)
    counting.calls.clear()
    capture = Capture()
    for _chunk in wsgi(env, capture):
        pass
    return dict(sorted(counting.calls.items()))


@contextmanager
def stores(names: list[str]) -> Iterator[dict[str, Any]]:
    with ExitStack() as stack, tempfile.TemporaryDirectory() as directory:
        made: dict[str, Any] = {}
        for name in names:
            if name == "memory":
                made[name] = MemoryStore()
            elif name == "sqlite":
                made[name] = SQLiteStore(Path(directory) / "sessions.db")
            elif name == "memcached":
                made[name] = MemcachedStore(stack.enter_context(servers.memcached()).address)
            else:
                server = stack.enter_context(servers.redis())
                made[name] = store_from_url(f"redis://{server.address}")
        yield made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.owners", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400, help="per round and cell")
    parser.add_argument("--stores", default=",".join(STORES))
    args = parser.parse_args(argv)
    rows = []
    with stores(args.stores.split(",")) as made:
        for name, store in made.items():
            for kind in KINDS:
                samples: dict[bool, list[int]] = {True: [], False: []}
                for _ in range(args.rounds):
                    for owned in (False, True):
                        wsgi = middleware(store, owned)
                        envs = requests_for(kind, wsgi, args.requests)
                        sample_wsgi(wsgi, envs, args.requests, samples[owned], name)
                plain, owned_calls = (
                    calls_per_request(store, owned, kind) for owned in (False, True)
                )
                rows.append(
                    (
                        name,
                        kind,
                        sum(plain.values()),
                        sum(owned_calls.values()),
                        ", ".join(f"{call} {n}" for call, n in owned_calls.items()),
                        median_us(samples[False]),
                        median_us(samples[True]),
                    )
                )
    print(
        "| store | request | store calls without owner_key | with | calls with owner_key "
        "| µs without | µs with | difference |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for name, kind, plain_calls, owned_calls, detail, plain_us, owned_us in rows:
        print(
            f"| {name} | {kind} | {plain_calls} | {owned_calls} | {detail} | {plain_us:.1f} "
            f"| {owned_us:.1f} | {owned_us - plain_us:+.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
