"""Store commands per request, counted by the store servers: ``python -m benchmarks.roundtrips``.

Exact, not timed: each cell is three visitors' requests of one kind (after one
visitor's warm-up request of that kind, so connections and scripts are in
place), in-process, and the store's own statistics before and after them:

- memcached: ``stats`` (``cmd_get`` counts each key fetched, ``gets`` too;
  ``cmd_set`` every storage command: ``set``, ``add``, ``cas``; ``cmd_touch``;
  ``delete_hits`` + ``delete_misses``; ``incr``/``decr`` hits and misses);
- Redis: every command the server runs, as ``MONITOR`` reports it; a command
  a Lua script runs is shown as the script's, so an ``EVAL`` or ``EVALSHA``
  counts once, as the one round trip it is (``INFO commandstats`` counts the
  script's inner commands as well, so it cannot say that);
- SQLite (ours only: the peers keep SQLite through SQLAlchemy): every
  statement the connection runs, from SQLite's own trace callback.

The subjects are wsgi_session on plain WSGI and through Flask (with and
without the per-user index, ``owner_key``), Flask-Session and Beaker, each
with its defaults (the rows of :mod:`benchmarks.subjects`).
"""

from __future__ import annotations

import argparse
import re
import socket
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.apps import LOGIN_KEY, WSGIApp, environ, payload
from benchmarks.servers import memcached, redis
from benchmarks.subjects import ROWS, Context, make_store, ours_flask, ours_wsgi
from benchmarks.timing import Failed, request

VISITORS = 3
STORES = ("memcached", "redis", "sqlite")
# (column, what the request is): the cookie a visitor sends comes from KINDS' setup.
KINDS = {
    "untouched": "untouched, with a cookie",
    "read": "read",
    "write": "write",
    "new": "new session",
    "login": "login",
    "logout": "logout",
}
INDEXED = ("login", "logout")  # the kinds the per-user index changes


# -- what the servers say ------------------------------------------------------------------

MEMCACHED_COMMANDS = {
    "cmd_get": "get",
    "cmd_set": "set",
    "cmd_touch": "touch",
    "delete_hits": "delete",
    "delete_misses": "delete",
    "incr_hits": "incr",
    "incr_misses": "incr",
    "decr_hits": "decr",
    "decr_misses": "decr",
}


def _connect(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def memcached_stats(address: str) -> Counter[str]:
    """The server's command counters (``stats`` itself counts in none of them)."""
    with _connect(address) as connection:
        connection.sendall(b"stats\r\n")
        text = b""
        while not text.endswith(b"END\r\n"):
            chunk = connection.recv(65536)
            if not chunk:
                raise RuntimeError("memcached closed the connection during stats")
            text += chunk
    counted: Counter[str] = Counter()
    for line in text.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in MEMCACHED_COMMANDS:
            counted[MEMCACHED_COMMANDS[parts[1]]] += int(parts[2])
    return counted


@contextmanager
def memcached_counting(address: str) -> Iterator[Counter[str]]:
    counted: Counter[str] = Counter()
    before = memcached_stats(address)
    yield counted
    counted.update(memcached_stats(address))
    counted.subtract(before)


_MONITOR_LINE = re.compile(r'\+\d+\.\d+ \[\d+ (?P<source>[^\]]+)\] "(?P<command>[^"]*)"')


def _resp(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


@contextmanager
def redis_counting(address: str) -> Iterator[Counter[str]]:
    """The commands Redis ran meanwhile, by name; a script's own commands left out."""
    counted: Counter[str] = Counter()
    marker = f"roundtrips-{uuid.uuid4().hex}"
    with _connect(address) as monitor:
        monitor.sendall(_resp("MONITOR"))
        reader = monitor.makefile("rb")
        if reader.readline().strip() != b"+OK":
            raise RuntimeError("Redis refused MONITOR")
        yield counted
        with _connect(address) as control:
            control.sendall(_resp("ECHO", marker))
            control.recv(1024)
        while True:
            line = reader.readline().decode("utf-8", "replace")
            if not line:
                raise RuntimeError("Redis closed the MONITOR connection")
            if marker in line:
                break
            found = _MONITOR_LINE.match(line)
            if found is not None and found["source"] != "lua":
                counted[found["command"].upper()] += 1


@contextmanager
def sqlite_counting(store: Any) -> Iterator[Counter[str]]:
    """The statements SQLite runs meanwhile on this thread's connection of ``store``."""
    counted: Counter[str] = Counter()
    connection = store._connection()  # the store's own, which the app's requests use
    connection.set_trace_callback(lambda sql: counted.update([sql.split()[0].upper()]))
    try:
        yield counted
    finally:
        connection.set_trace_callback(None)


# -- the subjects ------------------------------------------------------------------------


Build = Callable[[Context, str, Any], WSGIApp]  # (context, store kind, store) -> app


@dataclass(frozen=True)
class Subject:
    name: str  # the column
    build: Build
    indexed: bool | None = None  # True/False: ours with/without owner_key; None: a peer
    stores: tuple[str, ...] = STORES


def _row(name: str) -> Build:
    by_name = {row.name: row for row in ROWS}

    def build(ctx: Context, kind: str, store: Any) -> WSGIApp:
        return by_name[name.format(store=kind)].build(ctx)

    return build


def _ours(flask: bool, indexed: bool) -> Build:
    owner_key = LOGIN_KEY if indexed else None

    def build(ctx: Context, kind: str, store: Any) -> WSGIApp:
        if flask:
            return ours_flask(store, ctx.data, owner_key=owner_key)
        return ours_wsgi(store, ctx.data, owner_key=owner_key)

    return build


SUBJECTS = (
    Subject("ours plain", _ours(flask=False, indexed=False), indexed=False),
    Subject("ours plain, index", _ours(flask=False, indexed=True), indexed=True),
    Subject("ours Flask", _ours(flask=True, indexed=False), indexed=False),
    Subject("ours Flask, index", _ours(flask=True, indexed=True), indexed=True),
    Subject("Flask-Session", _row("Flask-Session {store}"), stores=("memcached", "redis")),
    Subject("Beaker", _row("Beaker {store}"), stores=("memcached", "redis")),
)


# -- one cell ----------------------------------------------------------------------------


def _cookie_for(app: WSGIApp, kind: str, name: str) -> str | None:
    """The Cookie header a visitor of ``kind`` sends (``None``: a new visitor)."""
    if kind == "new":
        return None
    seeded = request(app, environ("/seed"))
    cookie = seeded.cookie()
    if not cookie:
        raise Failed(f"{name}: seeding set no cookie")
    if kind == "logout":
        logged_in = request(app, environ("/login", cookie)).cookie()
        cookie = logged_in or cookie
    return cookie


def _visit(app: WSGIApp, kind: str, cookie: str | None, name: str) -> None:
    capture = request(app, environ(f"/{kind}", cookie))
    if not capture.status.startswith("200"):
        raise Failed(f"{name} /{kind}: answered {capture.status!r}")


def count_cell(app: WSGIApp, kind: str, counting: Callable[[], Any], name: str) -> Counter[str]:
    """The store commands of ``VISITORS`` requests of ``kind``, summed."""
    _visit(app, kind, _cookie_for(app, kind, name), name)  # warm-up
    cookies = [_cookie_for(app, kind, name) for _ in range(VISITORS)]
    with counting() as counted:
        for cookie in cookies:
            _visit(app, kind, cookie, name)
    return +counted  # without the zeros


def _per_request(counted: Counter[str]) -> str:
    total = sum(counted.values())
    if total == 0:
        return "0"
    parts = ", ".join(
        f"{command.lower()} {_number(n / VISITORS)}" for command, n in sorted(counted.items())
    )
    return f"{_number(total / VISITORS)} ({parts})"


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def run(
    ctx: Context, stores: tuple[str, ...] = STORES, progress: Callable[[str], None] = print
) -> tuple[dict[tuple[str, str, str], int | float], list[str]]:
    """Per (subject, store, kind) the commands per request, and the markdown table."""
    totals: dict[tuple[str, str, str], int | float] = {}
    cells: dict[tuple[str, str, str], str] = {}
    for store in stores:
        for subject in SUBJECTS:
            if store not in subject.stores:
                continue
            progress(f"round trips: {subject.name} on {store}")
            made = make_store(store, ctx) if subject.indexed is not None else None
            app = subject.build(ctx, store, made)
            counting: Callable[[], Any] = {
                "memcached": lambda: memcached_counting(ctx.memcached),
                "redis": lambda: redis_counting(ctx.redis),
                "sqlite": lambda: sqlite_counting(made),  # noqa: B023  (used in this pass only)
            }[store]
            for kind in KINDS:
                if subject.indexed and kind not in INDEXED:
                    continue  # the index changes only logins and logouts
                counted = count_cell(app, kind, counting, f"{subject.name} {store}")
                totals[subject.name, store, kind] = sum(counted.values()) / VISITORS
                cells[subject.name, store, kind] = _per_request(counted)
    lines = [
        f"### Store commands per request ({VISITORS} visitors a cell, in-process, "
        "counted by memcached's `stats`, Redis's `MONITOR` and SQLite's statement trace)",
        "",
        "| request | store | " + " | ".join(subject.name for subject in SUBJECTS) + " |",
        "|---|---|" + "---|" * len(SUBJECTS),
    ]
    for kind, label in KINDS.items():
        for store in stores:
            row = [cells.get((subject.name, store, kind), "") for subject in SUBJECTS]
            lines.append(f"| {label} | {store} | " + " | ".join(row) + " |")
    return totals, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.roundtrips", description=__doc__)
    parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="wsgi-session-roundtrips-") as tmp,
        memcached() as cache,
        redis() as redis_server,
    ):
        ctx = Context(payload(100), cache.address, Path(tmp), redis=redis_server.address)
        print("\n".join(run(ctx, progress=lambda message: None)[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
