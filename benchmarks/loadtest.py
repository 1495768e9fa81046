"""The HTTP section: gunicorn (2 sync workers) loaded by wrk on loopback.

One gunicorn serves every row of :data:`benchmarks.served.HTTP_ROWS`; each
run of wrk loads one row's path, sending that row's cookies (seeded through
the same stores beforehand) in turn. Rows are interleaved pass by pass, so a
busy moment of the machine hits them all alike; the best pass counts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from benchmarks.latency import DelayProxy, round_trip_us
from benchmarks.served import MEMCACHED_VARIABLE, REDIS_VARIABLE, context, http_rows, slug
from benchmarks.servers import Process, free_port, memcached, redis
from benchmarks.timing import seed

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("read", "write")
VISITORS = 500
WRK = ["wrk", "--threads", "1", "--connections", "4"]


def cookie_script(path: Path, cookies: list[str]) -> Path:
    """A wrk script sending the cookies in turn: many visitors, not one hammered session."""
    quoted = ",\n".join(f"  {json.dumps(cookie)}" for cookie in cookies)
    path.write_text(
        f"local cookies = {{\n{quoted}\n}}\n"
        "local sent = 0\n"
        "request = function()\n"
        "  sent = sent + 1\n"
        "  if #cookies == 0 then return wrk.format(nil, nil) end\n"
        '  return wrk.format(nil, nil, {["Cookie"] = cookies[sent % #cookies + 1]})\n'
        "end\n",
        encoding="utf-8",
    )
    return path


def wrk(url: str, seconds: int, script: Path) -> float:
    """Requests per second; raises if any answer was not a 2xx."""
    command = [*WRK, "--duration", f"{seconds}s", "--script", str(script), url]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"wrk {url}: {errors.group(1)} failed responses\n{output}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise RuntimeError(f"wrk {url}: no throughput in its output\n{output}")
    return float(found.group(1))


def gunicorn(cache: str, redis_address: str) -> Process:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        "2",
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "benchmarks.served:app",
    ]
    env = {**os.environ, MEMCACHED_VARIABLE: cache, REDIS_VARIABLE: redis_address}
    return Process("gunicorn", command, port, cwd=ROOT, env=env)


def run(
    seconds: int, passes: int, tmpdir: Path, delay: float = 0.0
) -> tuple[dict[str, float], list[str]]:
    """Best-of-``passes`` requests/s per ``"<row> <scenario>"``, and the markdown reporting them.

    ``delay``: the stores are reached through a :class:`DelayProxy` adding that
    many seconds each way (the sessions are seeded directly).
    """
    best: dict[str, float] = {}
    rows = http_rows()
    with ExitStack() as stack:
        cache = stack.enter_context(memcached())
        redis_server = stack.enter_context(redis())
        served = (cache.address, redis_server.address)
        added = ""
        if delay:
            served = tuple(
                stack.enter_context(DelayProxy(address, delay)).address for address in served
            )
            extra = round_trip_us(served[0]) - round_trip_us(cache.address)
            added = f" (a round trip through it measured {extra / 1000:.2f} ms slower)"
        ctx = context(cache.address, redis_server.address)
        scripts = {}
        for row in rows:  # each row's visitors, stored through the same servers gunicorn uses
            app = row.build(ctx)
            cookies = [] if row.family == "bare" else [seed(app, row.name) for _ in range(VISITORS)]
            scripts[row.name] = cookie_script(tmpdir / f"{slug(row.name)}.lua", cookies)
        with gunicorn(*served) as server:
            base = f"http://{server.address}"
            for row in rows:  # warm up both workers and their connections
                for scenario in SCENARIOS:
                    wrk(f"{base}/{slug(row.name)}/{scenario}", 1, scripts[row.name])
            for _ in range(passes):
                for scenario in SCENARIOS:
                    for row in rows:
                        url = f"{base}/{slug(row.name)}/{scenario}"
                        key = f"{row.name} {scenario}"
                        best[key] = max(best.get(key, 0.0), wrk(url, seconds, scripts[row.name]))
    away = f", the stores {delay * 1000:g} ms away each way{added}" if delay else ""
    lines = [
        "### HTTP: gunicorn, 2 sync workers, wrk on loopback (requests/s, best of "
        f"{passes} runs of {seconds} s, `{' '.join(WRK)}`, {VISITORS:,} sessions in turn{away})",
        "",
        "| app | read | write |",
        "|---|---:|---:|",
    ]
    for row in rows:
        cells = [f"{best[f'{row.name} {scenario}']:,.0f}" for scenario in SCENARIOS]
        lines.append(f"| {row.name} | {' | '.join(cells)} |")
    return best, lines
