"""Markdown output: the machine, the tables, and which targets are met."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata

from benchmarks.apps import SCENARIOS
from benchmarks.subjects import SEALED
from benchmarks.table import BARE, Results

SCENARIO_TITLES = {"untouched": "untouched", "read": "read", "write": "write", "new": "new visitor"}
PACKAGES = (
    "wsgi-session",
    "Flask",
    "Werkzeug",
    "itsdangerous",
    "Flask-Session",
    "Beaker",
    "pymemcache",
    "python-memcached",
    "redis",
    "gunicorn",
)

# (peer, the wsgi_session row doing the same job on the same framework)
RIVALS = (
    ("Beaker cookie", "wsgi_session cookie"),
    ("Beaker memcached", "wsgi_session memcached"),
    ("Flask built-in cookie", "wsgi_session cookie (Flask)"),
    ("Flask-Session memcached", "wsgi_session memcached (Flask)"),
    ("Flask-Session redis", "wsgi_session redis (Flask)"),
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _command_version(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
    except OSError:
        return "not installed"
    return (
        (done.stdout or done.stderr).splitlines()[0].strip() if done.stdout or done.stderr else "?"
    )


def machine(load: tuple[float, float]) -> list[str]:
    """The machine and versions; ``load``: the 1-minute load average at the start and the end."""
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return [
        f"- Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} "
        f"{platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- {', '.join(versions)}",
        f"- {_command_version(['memcached', '-V'])}, "
        f"{_command_version(['redis-server', '--version']).split(' sha=')[0]}, "
        f"SQLite {sqlite3.sqlite_version}, "
        f"{_command_version(['wrk', '-v']).split(' [')[0]}",
        f"- Load average (1 min) at the start and end of the run: {load[0]:.2f}, {load[1]:.2f}",
    ]


PEERS = [
    "Peers run with their defaults, as most applications do:",
    "",
    "- Flask's built-in sessions open (verify and decode) the cookie on every request, "
    "used or not.",
    "- Flask-Session loads the session on every request and, with its defaults (permanent "
    "sessions, `SESSION_REFRESH_EACH_REQUEST`), writes it back on every request too. Its "
    "pymemcache client is built with `no_delay=True` and `default_noreply=False`, so its "
    "writes are acknowledged like ours (pymemcache's default, noreply, would not wait).",
    "- Beaker's memcached backend speaks through python-memcached (it does not support "
    "pymemcache); Beaker serializes with pickle by default and does not compare-and-set.",
    "- Flask-Session's Redis backend uses the redis-py client it is given (here redis-py's "
    "defaults), `GET` to load and `SET` with a TTL to save, without compare-and-set.",
    "- wsgi_session writes with compare-and-set (memcached `gets`/`cas`, a version column "
    "in SQLite, a `GET` and a Lua `EVALSHA` in Redis), so a write costs a read and a "
    "conditional write.",
]


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def us(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1f}" if sign else f"{value:.1f}"


def ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def main_table(results: Results) -> list[str]:
    header = ["µs per request", *(SCENARIO_TITLES[s] for s in SCENARIOS)]
    rows = []
    for row in results.rows:
        if row.family == "bare":
            cells = [us(results.medians.get((row.name, s))) for s in SCENARIOS]
            rows.append([f"**{row.name}** (total)", *cells])
        else:
            cells = [us(results.overhead(row.name, s), sign=True) for s in SCENARIOS]
            rows.append([f"{row.name} (over {BARE[row.framework].split()[1]})", *cells])
    return table(header, rows)


def rivals_table(results: Results) -> list[str]:
    header = ["peer ÷ wsgi_session (overhead)", *(SCENARIO_TITLES[s] for s in SCENARIOS)]
    rows = []
    for peer, ours in RIVALS:
        cells = []
        for scenario in SCENARIOS:
            theirs, mine = results.overhead(peer, scenario), results.overhead(ours, scenario)
            cells.append(
                "n/a" if theirs is None or mine is None or mine <= 0 else f"{theirs / mine:.1f}x"
            )
        rows.append([f"{peer} ÷ {ours}", *cells])
    return table(header, rows)


def sealing_table(results: Results) -> list[str]:
    """What ``seal_records=True`` adds to each store's row, both measured in this run."""
    header = ["µs sealed over plain", *(SCENARIO_TITLES[s] for s in SCENARIOS)]
    rows = []
    for row in results.rows:
        if not row.name.endswith(SEALED):
            continue
        plain = row.name[: -len(SEALED)]
        cells = []
        for scenario in SCENARIOS:
            sealed, base = results.overhead(row.name, scenario), results.overhead(plain, scenario)
            cells.append("n/a" if sealed is None or base is None else us(sealed - base, sign=True))
        rows.append([plain, *cells])
    return table(header, rows)


def floors_table(results: Results) -> list[str]:
    rows = [[name, us(value)] for name, value in results.floors.items()]
    get, set_ = results.floors.get("memcached GET"), results.floors.get("memcached SET")
    if get is not None and set_ is not None:
        rows.append(["memcached GET + SET", us(get + set_)])
    get, set_ = results.floors.get("Redis GET"), results.floors.get("Redis SET")
    if get is not None and set_ is not None:
        rows.append(["Redis GET + SET", us(get + set_)])
    return table(["raw operation", "µs"], rows)


@dataclass(frozen=True)
class Target:
    text: str
    measured: float | None  # a ratio
    limit: float
    at_least: bool = False  # the ratio must reach the limit rather than stay under it
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def line(self) -> str:
        mark = {True: "✅ met", False: "❌ missed", None: "⬜ not measured"}[self.met]
        bound = "≥" if self.at_least else "≤"
        return f"- {mark}: {self.text}: {ratio(self.measured)} (target {bound} {self.limit}x)" + (
            f"; {self.detail}" if self.detail else ""
        )


def _over(
    text: str,
    measured: float | None,
    reference: float | None,
    limit: float,
    at_least: bool = False,
    unit: str = "µs",
) -> Target:
    """A target on ``measured / reference``."""
    if measured is None or reference is None or reference <= 0:
        return Target(text, None, limit, at_least)
    detail = f"{measured:.1f} {unit} vs {reference:.1f} {unit}"
    return Target(text, measured / reference, limit, at_least, detail)


def targets(results: Results, http: dict[str, float] | None) -> list[Target]:
    o = results.overhead
    floors = results.floors
    found: list[Target] = []

    beaker = [o(name, "untouched") for name in ("Beaker cookie", "Beaker memcached")]
    beaker_lazy = min((value for value in beaker if value is not None), default=None)
    for store in ("memory", "sqlite", "memcached", "redis", "cookie"):
        name = f"wsgi_session {store}"
        found.append(
            _over(
                f"{name} untouched ≤ 0.5x Beaker's lazy session",
                o(name, "untouched"),
                beaker_lazy,
                0.5,
            )
        )

    get, set_ = floors.get("memcached GET"), floors.get("memcached SET")
    found.append(
        _over("memcached read ≤ 1.1x raw GET", o("wsgi_session memcached", "read"), get, 1.1)
    )
    found.append(
        _over(
            "memcached write ≤ 1.1x raw GET + SET",
            o("wsgi_session memcached", "write"),
            None if get is None or set_ is None else get + set_,
            1.1,
        )
    )
    get, set_ = floors.get("Redis GET"), floors.get("Redis SET")
    found.append(_over("Redis read ≤ 1.1x raw GET", o("wsgi_session redis", "read"), get, 1.1))
    found.append(
        _over(
            "Redis write ≤ 1.1x raw GET + SET",
            o("wsgi_session redis", "write"),
            None if get is None or set_ is None else get + set_,
            1.1,
        )
    )
    for peer, ours in (
        ("Beaker memcached", "wsgi_session memcached"),
        ("Flask-Session memcached", "wsgi_session memcached (Flask)"),
    ):
        for scenario in ("read", "write", "new"):
            found.append(
                _over(
                    f"{ours} {scenario} ≥ 2x faster than {peer}",
                    o(peer, scenario),
                    o(ours, scenario),
                    2.0,
                    at_least=True,
                )
            )

    for ours in ("wsgi_session cookie (Flask)", "wsgi_session cookie"):
        for scenario in ("read", "write"):
            found.append(
                _over(
                    f"{ours} {scenario} ≤ 0.3x Flask built-in cookie sessions",
                    o(ours, scenario),
                    o("Flask built-in cookie", scenario),
                    0.3,
                )
            )

    found.append(
        _over(
            "SQLite read ≤ 1.2x raw SELECT",
            o("wsgi_session sqlite", "read"),
            floors.get("SQLite SELECT"),
            1.2,
        )
    )
    found.append(
        _over(
            "SQLite write ≤ 1.2x raw UPSERT",
            o("wsgi_session sqlite", "write"),
            floors.get("SQLite UPSERT"),
            1.2,
        )
    )

    for scenario in ("read", "write"):
        session = None if http is None else http.get(f"memcached {scenario}")
        bare = None if http is None else http.get(f"bare {scenario}")
        target = _over(
            f"HTTP {scenario} with memcached sessions ≥ 0.85x bare throughput",
            session,
            bare,
            0.85,
            at_least=True,
            unit="req/s",
        )
        found.append(target)
    return found
