"""The HTTP section: gunicorn (2 sync workers) loaded by wrk on loopback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.served import ADDRESS_VARIABLE, memcached_app
from benchmarks.servers import Process, free_port, memcached
from benchmarks.timing import seed

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("read", "write")
PASSES = 3
VISITORS = 1000
WRK = ["wrk", "--threads", "1", "--connections", "4"]


def cookie_script(path: Path, cookies: list[str]) -> Path:
    """A wrk script sending the cookies in turn: many visitors, not one hammered session."""
    quoted = ",\n".join(f"  {json.dumps(cookie)}" for cookie in cookies)
    path.write_text(
        f"local cookies = {{\n{quoted}\n}}\n"
        "local sent = 0\n"
        "request = function()\n"
        "  sent = sent + 1\n"
        '  return wrk.format(nil, nil, {["Cookie"] = cookies[sent % #cookies + 1]})\n'
        "end\n",
        encoding="utf-8",
    )
    return path


def wrk(url: str, seconds: int, script: Path) -> float:
    """Requests per second; raises if any answer was not a 2xx."""
    command = [*WRK, "--duration", f"{seconds}s", "--script", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"wrk {url}: {errors.group(1)} failed responses\n{output}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise RuntimeError(f"wrk {url}: no throughput in its output\n{output}")
    return float(found.group(1))


def gunicorn(address: str) -> Process:
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
    env = {**os.environ, ADDRESS_VARIABLE: address}
    return Process("gunicorn", command, port, cwd=ROOT, env=env)


def run(seconds: int, tmpdir: Path) -> tuple[dict[str, float], list[str]]:
    """Best-of-``PASSES`` requests/s per path, and the markdown reporting them."""
    best: dict[str, float] = {}
    with memcached() as cache, gunicorn(cache.address) as server:
        app = memcached_app(cache.address)
        cookies = [seed(app, "HTTP memcached") for _ in range(VISITORS)]
        script = cookie_script(tmpdir / "cookies.lua", cookies)
        base = f"http://{server.address}"
        for scenario in SCENARIOS:  # warm up both workers and their connections
            for prefix in ("bare", "memcached"):
                wrk(f"{base}/{prefix}/{scenario}", 1, script)
        for _ in range(PASSES):
            for scenario in SCENARIOS:
                for prefix in ("bare", "memcached"):
                    rate = wrk(f"{base}/{prefix}/{scenario}", seconds, script)
                    key = f"{prefix} {scenario}"
                    best[key] = max(best.get(key, 0.0), rate)
    rows = []
    for scenario in SCENARIOS:
        bare, session = best[f"bare {scenario}"], best[f"memcached {scenario}"]
        rows.append(f"| {scenario} | {bare:,.0f} | {session:,.0f} | {session / bare:.2f}x |")
    lines = [
        "### HTTP: gunicorn, 2 sync workers, wrk on loopback (requests/s, best of "
        f"{PASSES} runs of {seconds} s, `{' '.join(WRK)}`, {VISITORS:,} sessions in turn)",
        "",
        "| request | bare app | with memcached sessions | ratio |",
        "|---|---:|---:|---:|",
        *rows,
    ]
    return best, lines
