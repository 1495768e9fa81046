"""``python -m benchmarks``: the whole run, printed as markdown."""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import (
    databases,
    growth,
    instructions,
    loadtest,
    profiling,
    report,
    roundtrips,
    table,
)
from benchmarks.apps import payload
from benchmarks.floors import session_record
from benchmarks.servers import memcached, redis
from benchmarks.subjects import ROWS, Context

PINNED = (
    "The benchmark and its memcached and Redis share one CPU: on a machine whose cores are far "
    "apart (a VM's vCPUs) a wake-up across cores adds tens of µs, at random, to every "
    "round trip, which drowns what is measured here. Pinned, a round trip costs what its "
    "system calls and memcached's work cost. The HTTP section is not pinned."
)


def pin() -> set[int] | None:
    """Keep this process, and the servers it starts from now on, on one CPU."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        return None
    os.sched_setaffinity(0, {min(allowed)})
    return allowed


STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--count", type=int, default=600, help="requests per cell a round (600)")
    parser.add_argument("--only", default="", help="rows whose name contains this text")
    parser.add_argument("--quick", action="store_true", help="few iterations, for a smoke run")
    parser.add_argument("--no-growth", action="store_true", help="skip the growth tables")
    parser.add_argument("--no-http", action="store_true", help="skip gunicorn + wrk")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.5,
        help="the HTTP rows again with the stores this far away each way (0.5; 0: skip)",
    )
    parser.add_argument(
        "--no-roundtrips", action="store_true", help="skip the store commands per request"
    )
    parser.add_argument(
        "--no-databases", action="store_true", help="skip the PostgreSQL and Django table"
    )
    parser.add_argument(
        "--databases",
        action="store_true",
        help="run only the PostgreSQL and Django table (benchmarks/databases.py)",
    )
    parser.add_argument(
        "--counts",
        type=lambda text: [int(float(n)) for n in text.split(",")],
        default=list(growth.COUNTS),
        help="stored sessions for the growth table (1e3,1e5,1e6)",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not share one CPU with memcached (see output)"
    )
    parser.add_argument("--http-seconds", type=int, default=4, help="wrk duration per run (4)")
    parser.add_argument("--http-passes", type=int, default=2, help="wrk runs per app (2)")
    parser.add_argument(
        "--profile", metavar="ROW:SCENARIO", help="profile one cell with cProfile instead"
    )
    parser.add_argument(
        "--instructions",
        metavar="ROW:SCENARIO",
        help="count instructions per request under callgrind (the bare app, the floor app, "
        "the row); 'pieces' counts each unavoidable piece",
    )
    parser.add_argument("--output", type=Path, help="also write the markdown to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.count, args.http_seconds, args.counts = 2, 150, 2, [1000, 10_000]
        args.http_passes = 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    data = payload(100)
    load_start = os.getloadavg()[0]
    allowed = None if args.no_pin else pin()
    if args.databases:
        lines = _header(args, load_start) + databases.run(data, args.rounds, args.count, progress)
        if allowed is not None:
            lines += ["", PINNED]
        return _publish(lines, args.output)
    with (
        tempfile.TemporaryDirectory(prefix="wsgi-session-bench-") as tmp,
        memcached() as server,
        redis() as redis_server,
    ):
        ctx = Context(data, server.address, Path(tmp), redis=redis_server.address)
        if args.profile:
            profiling.run(args.profile, ctx, count=args.count * args.rounds)
            return 0
        if args.instructions:
            print("\n".join(instructions.run(args.instructions, ctx)))
            return 0
        rows = [row for row in ROWS if row.family in ("bare", "floor") or args.only in row.name]
        progress(f"main table: {len(rows)} rows")
        results = table.run(rows, ctx, session_record(data), args.rounds, args.count, progress)
        lines = [
            "### Per-request cost over the bare app (median µs)",
            "",
            *report.main_table(results),
            "",
            *report.rivals_table(results),
            "",
            "### What sealing costs (`seal_records=True`, same run, target ≤ +4 µs)",
            "",
            *report.sealing_table(results),
            "",
            "### What metrics cost (`metrics=`, same run, target under 1 µs)",
            "",
            *report.metrics_table(results),
            "",
            "### The physical floor (same run, record of "
            f"{len(session_record(data))} bytes, median µs)",
            "",
            *report.floors_table(results),
            "",
            "### The floor: what a session request cannot skip (same run, median µs per call)",
            "",
            *report.pieces_table(results),
            "",
            *report.floor_app_table(results),
        ]
        if results.unavailable:
            lines += ["", "Not measured:", ""]
            lines += [f"- {name}: {why}" for name, why in results.unavailable.items()]
        trips = None
        if not args.no_roundtrips:
            trips, trip_lines = roundtrips.run(ctx, progress=progress)
            lines += ["", *trip_lines]
        if not args.no_growth:
            lines += ["", *growth.run(ctx, min(args.rounds, 3), args.count, args.counts, progress)]
        if not args.no_databases:
            lines += ["", *databases.run(data, args.rounds, args.count, progress)]
        http = far = None
        if allowed is not None:
            os.sched_setaffinity(0, allowed)
        if not args.no_http:
            if shutil.which("wrk") is None:
                lines += ["", "HTTP: skipped, `wrk` is not installed."]
            else:
                progress("HTTP: gunicorn + wrk")
                try:
                    http, http_lines = loadtest.run(args.http_seconds, args.http_passes, ctx.tmpdir)
                except Exception as error:  # the tables above are still worth printing
                    http_lines = [f"HTTP: failed: {type(error).__name__}: {error}"]
                lines += ["", *http_lines]
                if args.latency_ms > 0:
                    progress(f"HTTP with the stores {args.latency_ms:g} ms away")
                    try:
                        far, far_lines = loadtest.run(
                            args.http_seconds, 1, ctx.tmpdir, delay=args.latency_ms / 1000
                        )
                    except Exception as error:
                        far_lines = [
                            f"HTTP through the delay: failed: {type(error).__name__}: {error}"
                        ]
                    lines += ["", *far_lines]
        lines += ["", "### Targets: the hot path at its floor", ""]
        lines += report.targets_table(report.floor_targets(results, http))
        lines += ["", "### Targets: as users see it (round trips, the Flask path)", ""]
        lines += report.targets_table(report.user_targets(http, trips, far))
        lines += ["", "### Targets against the peers", ""]
        lines += report.targets_table(report.targets(results, http))
        lines += ["", *report.PEERS]
        if allowed is not None:
            lines += ["", PINNED]
    return _publish(_header(args, load_start) + lines, args.output)


def _publish(lines: list[str], output: Path | None) -> int:
    text = "\n".join(lines) + "\n"
    print(text)
    if output:
        output.write_text(text, encoding="utf-8")
    return 0


def _header(args: argparse.Namespace, load_start: float) -> list[str]:
    return [
        "## Benchmarks",
        "",
        f"Run on {datetime.date.today().isoformat()} with `make bench` "
        f"(`python -m benchmarks`, {args.rounds} rounds x {args.count} requests per cell).",
        "",
        *report.machine((load_start, os.getloadavg()[0])),
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
