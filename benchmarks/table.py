"""The main table: every row, every scenario, and the raw floors, in interleaved rounds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.apps import SCENARIOS, WSGIApp, environ
from benchmarks.floors import memcached_ops, redis_ops, sqlite_ops
from benchmarks.subjects import Context, Row
from benchmarks.timing import Failed, median_us, sample_batches, sample_calls, sample_wsgi, seed
from benchmarks.unavoidable import Piece, nothing, pieces, sums


@dataclass
class Built:
    row: Row
    app: WSGIApp
    envs: dict[str, list[dict[str, Any]]]


@dataclass
class Results:
    """Median µs per (row, scenario), floor operation and unavoidable piece; what could not run."""

    rows: list[Row] = field(default_factory=list)
    medians: dict[tuple[str, str], float] = field(default_factory=dict)
    floors: dict[str, float] = field(default_factory=dict)
    pieces: list[Piece] = field(default_factory=list)
    piece_us: dict[str, float] = field(default_factory=dict)  # net of calling a piece
    unavailable: dict[str, str] = field(default_factory=dict)

    def floor_sum(self, store: str, scenario: str) -> float | None:
        """The sum of the unavoidable pieces of ``store``'s ``scenario``, if all were timed."""
        return sums(self.piece_us, self.pieces).get((store, scenario))

    def overhead(self, name: str, scenario: str) -> float | None:
        """Median time over the row's bare app, or ``None`` if either did not run."""
        row = next((row for row in self.rows if row.name == name), None)
        if row is None or (name, scenario) not in self.medians:
            return None
        bare = self.medians.get((BARE[row.framework], scenario))
        return None if bare is None else self.medians[(name, scenario)] - bare


BARE = {"wsgi": "bare WSGI app", "flask": "bare Flask app"}
PIECE_BATCH = 20  # calls per timed sample of an unavoidable piece


def scenario_envs(cookie: str | None) -> dict[str, list[dict[str, Any]]]:
    """One request per scenario; every one but the new visitor's carries the cookie."""
    return {
        scenario: [environ(f"/{scenario}", None if scenario == "new" else cookie)]
        for scenario in SCENARIOS
    }


def build(rows: Sequence[Row], ctx: Context, results: Results) -> list[Built]:
    built = []
    for row in rows:
        try:
            app = row.build(ctx)
            cookie = None if row.family == "bare" else seed(app, row.name)
        except Exception as error:  # a missing module or a broken row loses that row only
            results.unavailable[row.name] = f"{type(error).__name__}: {error}"
            continue
        built.append(Built(row, app, scenario_envs(cookie)))
    return built


def floor_ops(ctx: Context, value: bytes, results: Results) -> dict[str, Callable[[int], object]]:
    ops: dict[str, Callable[[int], object]] = {}
    for name, make in (
        ("memcached", lambda: memcached_ops(ctx.memcached, value)),
        ("Redis", lambda: redis_ops(ctx.redis, value)),
        ("SQLite", lambda: sqlite_ops(ctx.tmpdir / "floor.sqlite3", value)),
    ):
        try:
            ops.update(make())
        except Exception as error:
            results.unavailable[f"{name} floor"] = f"{type(error).__name__}: {error}"
    return ops


def run(
    rows: Sequence[Row],
    ctx: Context,
    record: bytes,
    rounds: int,
    count: int,
    progress: Callable[[str], None],
) -> Results:
    """Time ``rounds`` x ``count`` requests per cell, rows interleaved so drift hits all alike."""
    results = Results()
    built = build(rows, ctx, results)
    ops = floor_ops(ctx, record, results)
    results.pieces = pieces(ctx.data)
    samples: dict[tuple[str, str], list[int]] = {}
    piece_samples: dict[str, list[float]] = {}
    for number in range(rounds):
        progress(f"round {number + 1}/{rounds}")
        for item in list(built):
            try:
                for scenario, envs in item.envs.items():
                    out = samples.setdefault((item.row.name, scenario), [])
                    sample_wsgi(item.app, envs, count, out, item.row.name)
            except Failed as error:
                results.unavailable[item.row.name] = str(error)
                built.remove(item)
        for name, op in ops.items():
            sample_calls(op, count, samples.setdefault(("floor", name), []))
        for name, call in [("", nothing), *((piece.name, piece.call) for piece in results.pieces)]:
            sample_batches(call, count, piece_samples.setdefault(name, []), PIECE_BATCH)
    results.rows = [item.row for item in built]
    calling = median_us(piece_samples.pop(""))
    results.piece_us = {name: median_us(values) - calling for name, values in piece_samples.items()}
    for (name, scenario), values in samples.items():
        if name == "floor":
            results.floors[scenario] = median_us(values)
        elif any(item.row.name == name for item in built):
            results.medians[(name, scenario)] = median_us(values)
    return results
