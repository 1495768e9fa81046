"""How the cost grows: with the size of a session, and with the number of stored sessions."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from benchmarks.apps import WSGIApp, bare_app, environ, payload
from benchmarks.floors import (
    TABLE,
    TTL,
    memcached_ops,
    session_record,
    sqlite_connect,
    sqlite_ops,
    sqlite_table,
)
from benchmarks.report import table
from benchmarks.servers import memcached
from benchmarks.subjects import STORES, Context, make_store, ours_wsgi, pymemcache_client
from benchmarks.timing import median_us, sample_calls, sample_wsgi, seed

SIZES = (100, 10_000, 100_000)
COUNTS = (1_000, 100_000, 1_000_000)
SAMPLE = 1_000  # stored sessions the requests go to, spread over the whole store
CHUNK = 1_000
Progress = Callable[[str], None]
Op = Callable[[int], object]


def _cells(
    apps: dict[str, tuple[WSGIApp, list[str]]], ops: dict[str, Op], rounds: int, count: int
) -> dict[str, float]:
    """Median µs of each app's read and write, and of each raw operation.

    Each app's requests cycle through its cookies, one per stored session.
    """
    samples: dict[str, list[int]] = {}
    for _ in range(rounds):
        for name, (app, cookies) in apps.items():
            for scenario in ("read", "write"):
                envs = [environ(f"/{scenario}", cookie) for cookie in cookies]
                out = samples.setdefault(f"{name} {scenario}", [])
                sample_wsgi(app, envs, count, out, name)
        for name, op in ops.items():
            sample_calls(op, count, samples.setdefault(name, []))
    return {name: median_us(values) for name, values in samples.items()}


def by_size(ctx: Context, rounds: int, count: int, progress: Progress) -> list[str]:
    columns: dict[int, dict[str, float]] = {}
    failed: dict[str, str] = {}
    for size in SIZES:
        progress(f"growth: {size} byte sessions")
        data = payload(size)
        sized = replace(ctx, data=data)
        apps: dict[str, tuple[WSGIApp, list[str]]] = {"bare": (bare_app(data), [""])}
        for kind in STORES:
            try:
                app = ours_wsgi(make_store(kind, sized), data)
                apps[kind] = (app, [seed(app, kind)])
            except Exception as error:
                failed[f"{kind} at {size} B"] = f"{type(error).__name__}: {error}"
        record = session_record(data)
        ops = {
            **memcached_ops(ctx.memcached, record),
            **sqlite_ops(ctx.tmpdir / "floor.sqlite3", record),
        }
        columns[size] = _cells(apps, ops, rounds, count)
    header = ["median µs"] + [f"{_bytes(size)} {op}" for size in SIZES for op in ("read", "write")]
    rows = []
    for kind in STORES:
        cells = []
        for size in SIZES:
            cell = columns[size]
            for scenario in ("read", "write"):
                mine, bare = cell.get(f"{kind} {scenario}"), cell[f"bare {scenario}"]
                cells.append("n/a" if mine is None else f"+{mine - bare:.1f}")
        rows.append([f"wsgi_session {kind} (over bare)", *cells])
    for read, write in (("memcached GET", "memcached SET"), ("SQLite SELECT", "SQLite UPSERT")):
        cells = []
        for size in SIZES:
            cells += [f"{columns[size][read]:.1f}", f"{columns[size][write]:.1f}"]
        rows.append([f"raw {read} / {write.split()[1]}", *cells])
    lines = ["### Growth with the session's size (JSON bytes)", "", *table(header, rows)]
    if failed:
        lines += ["", *(f"- {name}: {why}" for name, why in failed.items())]
    return lines


def _bytes(size: int) -> str:
    return f"{size // 1000} KB" if size >= 1000 else f"{size} B"


class Filled:
    """A store pre-filled with ``count`` sessions; ``cookies`` find ``SAMPLE`` of them."""

    def __init__(self, app: Any, count: int, record: bytes) -> None:
        backend = app.backend
        ids = [secrets.token_urlsafe(32) for _ in range(min(SAMPLE, count))]
        self.keys = [backend.store_key(session_id) for session_id in ids]
        self.cookies = [f"{app.policy.name}={backend.signer.sign(i)}" for i in ids]
        self.count = count
        self.record = record

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every record to store: the sampled ones spread evenly among anonymous ones."""
        step = self.count // len(self.keys)
        sampled = iter(self.keys)
        for i in range(self.count):
            if i % step == 0 and i // step < len(self.keys):
                yield next(sampled), self.record
            else:
                yield hashlib.sha256(os.urandom(16)).hexdigest(), self.record


def _sqlite(ctx: Context, count: int, record: bytes) -> tuple[WSGIApp, Filled, dict[str, Op]]:
    """wsgi_session on SQLite, its table filled in one transaction, and the raw floor."""
    filled_ctx = replace(ctx, sqlite_name=f"filled-{count}.sqlite3")
    path = filled_ctx.sqlite_path()
    sqlite_table(path)
    app = ours_wsgi(make_store("sqlite", filled_ctx), ctx.data)
    filled = Filled(app, count, record)
    connection = sqlite_connect(path)
    expires = time.time() + TTL
    insert = f'INSERT INTO "{TABLE}" (key, data, version, expires) VALUES (?, ?, 1, ?)'
    connection.execute("BEGIN")
    connection.executemany(insert, ((key, data, expires) for key, data in filled.items()))
    connection.execute("COMMIT")
    connection.close()
    return app, filled, sqlite_ops(path, record, filled.keys)


def _memcached(ctx: Context, count: int, record: bytes) -> tuple[WSGIApp, Filled, dict[str, Op]]:
    """wsgi_session on memcached, filled with pipelined noreply sets, and the raw floor."""
    app = ours_wsgi(make_store("memcached", ctx), ctx.data)
    filled = Filled(app, count, record)
    client = pymemcache_client(ctx.memcached, noreply=True)
    chunk: dict[str, bytes] = {}
    for key, data in filled.items():
        chunk[key] = data
        if len(chunk) == CHUNK:
            client.set_many(chunk, expire=TTL, noreply=True)
            chunk = {}
    if chunk:
        client.set_many(chunk, expire=TTL, noreply=True)
    # Replies come in order on one connection: this one means every set was processed.
    if client.get(filled.keys[-1]) is None:
        raise RuntimeError("memcached lost pre-filled sessions: raise -m")
    client.close()
    return app, filled, memcached_ops(ctx.memcached, record, filled.keys)


def by_count(
    ctx: Context, counts: Sequence[int], rounds: int, count: int, progress: Progress
) -> list[str]:
    record = session_record(ctx.data)
    bare = bare_app(ctx.data)
    columns: dict[int, dict[str, float]] = {}
    notes = []
    for stored in counts:
        progress(f"growth: {stored:,} stored sessions")
        megabytes = 64 + stored * 600 // 2**20
        with memcached(megabytes) as server:
            started = time.perf_counter()
            sqlite_app, sqlite_filled, sqlite_floor = _sqlite(ctx, stored, record)
            middle = time.perf_counter()
            cache_ctx = replace(ctx, memcached=server.address)
            cache_app, cache_filled, cache_floor = _memcached(cache_ctx, stored, record)
            ended = time.perf_counter()
            apps = {
                "bare": (bare, [""]),
                "sqlite": (sqlite_app, sqlite_filled.cookies),
                "memcached": (cache_app, cache_filled.cookies),
            }
            columns[stored] = _cells(apps, {**sqlite_floor, **cache_floor}, rounds, count)
            stats = pymemcache_client(server.address, noreply=False).stats()
        notes.append(
            f"- {stored:,} sessions: SQLite filled in {middle - started:.1f} s; memcached "
            f"(-m {megabytes}) in {ended - middle:.1f} s, {int(stats[b'evictions'])} evictions"
        )
    header = ["median µs", *(f"{stored:,} sessions" for stored in counts)]
    rows = []
    for name in (
        "sqlite read",
        "SQLite SELECT",
        "sqlite write",
        "SQLite UPSERT",
        "memcached read",
        "memcached GET",
        "memcached write",
        "memcached SET",
    ):
        operation = name.split()[1]
        if operation in ("read", "write"):  # a request: shown over the bare app's
            label = f"wsgi_session {name} (over bare)"
            cells = [columns[n][name] - columns[n][f"bare {operation}"] for n in counts]
        else:
            label = f"raw {name}"
            cells = [columns[n][name] for n in counts]
        rows.append([label, *(f"{cell:.1f}" for cell in cells)])
    return [
        f"### Growth with the number of stored sessions (requests spread over {SAMPLE:,} of them)",
        "",
        *table(header, rows),
        "",
        *notes,
    ]


def run(
    ctx: Context, rounds: int, count: int, counts: Sequence[int], progress: Progress
) -> list[str]:
    return [
        *by_size(ctx, rounds, count, progress),
        "",
        *by_count(ctx, counts, rounds, count, progress),
    ]
