"""``--instructions ROW:SCENARIO``: instructions per request, counted by callgrind.

Times on a shared VM move by up to 2x from one run to the next; the number of
instructions a request executes does not. This runs a child Python under
``valgrind --tool=callgrind``: it builds the bare app, the floor app
(:mod:`benchmarks.unavoidable`) and the row, seeds and warms them, then sends
each one's request ``SHORT`` times and ``LONG`` times, calling ``os.getppid()``
between the runs. With ``--dump-before=os_getppid`` callgrind writes a
profile at each of those calls, so every run's instructions land in a file of
their own, and ``(long - short) / (LONG - SHORT)`` leaves out whatever a run
costs once (the loop's start, the dump). ``--instructions pieces`` does the
same for each unavoidable piece, net of calling an empty one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.apps import payload
from benchmarks.subjects import FLOOR_ROW, ROWS, Context
from benchmarks.table import BARE, Results, build
from benchmarks.timing import request
from benchmarks.unavoidable import nothing, pieces

# CPython's C function behind os.getppid(): nothing the benchmark runs calls it.
MARKER = "os_getppid"
SHORT, LONG = 100, 600  # requests per run
PIECE_SHORT, PIECE_LONG = 200, 1200  # calls per run of a piece
WARMUP = 50
PIECES = "pieces"
_SUMMARY = re.compile(rb"^summary:\s*(\d+)", re.MULTILINE)


def run(spec: str, ctx: Context) -> list[str]:
    """Count ``spec`` (``ROW:SCENARIO`` or ``pieces``) under callgrind: markdown lines."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (make bench installs it)")
    with tempfile.TemporaryDirectory(prefix="wsgi-session-callgrind-") as out:
        profile = Path(out) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--dump-before={MARKER}",
            f"--callgrind-out-file={profile}",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            spec,
            ctx.memcached,
            ctx.redis,
            str(ctx.tmpdir),
        ]
        # A fixed hash seed: with a random one, dict and set layouts (and so the
        # counts) drift by about 2k instructions per request between runs.
        seeded = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, capture_output=True, check=False, env=seeded)
        if done.returncode != 0:
            raise SystemExit(f"callgrind run failed:\n{done.stderr.decode()[-3000:]}")
        labels: list[str] = json.loads(done.stdout.decode().splitlines()[-1])
        totals = [
            _instructions(Path(f"{profile}.{number}")) for number in range(2, 2 + 2 * len(labels))
        ]
    per_call = {
        label: (totals[2 * i + 1] - totals[2 * i]) / _runs(spec) for i, label in enumerate(labels)
    }
    return _pieces_table(per_call) if spec == PIECES else _cells_table(spec, per_call)


def _runs(spec: str) -> int:
    return PIECE_LONG - PIECE_SHORT if spec == PIECES else LONG - SHORT


def _instructions(profile: Path) -> int:
    """The instructions counted in one callgrind dump."""
    if not profile.exists():
        raise SystemExit(
            f"callgrind wrote no {profile.name}: this Python's {MARKER} has no symbol, "
            "so runs cannot be told apart"
        )
    found = _SUMMARY.search(profile.read_bytes())
    if found is None:
        raise SystemExit(f"{profile.name}: no summary line")
    return int(found.group(1))


def _cells_table(spec: str, per_request: dict[str, float]) -> list[str]:
    bare = next(iter(per_request.values()))
    lines = [
        f"Instructions per request, {spec} (callgrind, {LONG} - {SHORT} requests):",
        "",
        "| app | instructions | over the bare app |",
        "|---|---:|---:|",
    ]
    for i, (label, count) in enumerate(per_request.items()):
        over = "" if i == 0 else f"{count - bare:+,.0f}"
        lines.append(f"| {label} | {count:,.0f} | {over} |")
    return lines


def _pieces_table(per_call: dict[str, float]) -> list[str]:
    calling = per_call.pop("")
    lines = [
        f"Instructions per call of each unavoidable piece (callgrind, {PIECE_LONG} - "
        f"{PIECE_SHORT} calls, net of calling an empty piece: {calling:,.0f}):",
        "",
        "| piece | instructions |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {count - calling:,.0f} |" for label, count in per_call.items()]
    return lines


# -- the child, under callgrind ---------------------------------------------------


def _cells(spec: str, ctx: Context) -> list[tuple[str, Callable[[], object]]]:
    """The bare app, the floor app and the row of ``spec``: one request each, seeded and warm."""
    name, _, scenario = spec.rpartition(":")
    chosen = [row for row in ROWS if row.name == name]
    if not chosen:
        raise SystemExit(f"no row named {name!r}; rows: {', '.join(row.name for row in ROWS)}")
    names = list(dict.fromkeys([BARE["wsgi"], FLOOR_ROW, BARE[chosen[0].framework], name]))
    results = Results()
    built = build([next(row for row in ROWS if row.name == n) for n in names], ctx, results)
    if len(built) != len(names):
        raise SystemExit(f"could not build: {results.unavailable}")
    cells = []
    for item in built:
        app, env = item.app, item.envs[scenario][0]
        cells.append((item.row.name, lambda app=app, env=env: request(app, env.copy())))
    return cells


def child(argv: list[str]) -> None:
    spec, memcached, redis, tmpdir = argv
    ctx = Context(payload(100), memcached, Path(tmpdir), redis=redis)
    if spec == PIECES:
        calls = [("", nothing), *((piece.name, piece.call) for piece in pieces(ctx.data))]
        short, long = PIECE_SHORT, PIECE_LONG
    else:
        calls = _cells(spec, ctx)
        short, long = SHORT, LONG
    for _, call in calls:
        for _ in range(WARMUP):
            call()
    os.getppid()  # the profile so far (start-up, building, warming) goes to dump 1
    for _, call in calls:
        for count in (short, long):
            for _ in range(count):
                call()
            os.getppid()
    print(json.dumps([label for label, _ in calls]))


if __name__ == "__main__":
    child(sys.argv[1:])
