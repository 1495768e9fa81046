"""``--profile ROW:SCENARIO``: where one cell's time goes, per request, with cProfile."""

from __future__ import annotations

import cProfile
import pstats

from benchmarks.subjects import ROWS, Context
from benchmarks.table import Results, build
from benchmarks.timing import request

TOP = 30


def run(spec: str, ctx: Context, count: int) -> None:
    name, _, scenario = spec.rpartition(":")
    rows = [row for row in ROWS if row.name == name]
    if not rows:
        raise SystemExit(f"no row named {name!r}; rows: {', '.join(row.name for row in ROWS)}")
    results = Results()
    built = build(rows, ctx, results)
    if not built:
        raise SystemExit(f"{name}: {results.unavailable[name]}")
    app, env = built[0].app, built[0].envs[scenario][0]
    for _ in range(200):
        request(app, env.copy())
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        request(app, env.copy())
    profiler.disable()
    stats = pstats.Stats(profiler)
    print(f"{name} {scenario}: {count} requests; µs per request (cProfile inflates all)")
    print(f"{'own µs':>8} {'cum µs':>8} {'calls':>6}  function")
    entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    for (path, line, function), (_, calls, own, cumulative, _) in entries[:TOP]:
        where = f"{path.rsplit('/', 2)[-2:]!s}:{line}" if path != "~" else ""
        print(
            f"{own / count * 1e6:8.2f} {cumulative / count * 1e6:8.2f} "
            f"{calls / count:6.1f}  {function} {where}"
        )
