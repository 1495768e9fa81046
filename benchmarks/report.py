"""Markdown output: the machine, the tables, and which targets are met."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from importlib import metadata

from benchmarks.apps import SCENARIOS
from benchmarks.subjects import FLOOR_ROW, METERED, SEALED, STORES
from benchmarks.table import BARE, Results
from benchmarks.unavoidable import FLOOR_STORES

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
    "Django",
    "psycopg",
    "SQLAlchemy",
    "Flask-SQLAlchemy",
)

# (peer, the wsgi_session row doing the same job on the same framework)
RIVALS = (
    ("Beaker cookie", "wsgi_session cookie"),
    ("Beaker memcached", "wsgi_session memcached"),
    ("Flask built-in cookie", "wsgi_session cookie (Flask)"),
    ("Flask-Session memcached", "wsgi_session memcached (Flask)"),
    ("Beaker redis", "wsgi_session redis"),
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
        if row.family == "floor":  # shown next to wsgi_session memory in the floor table
            continue
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
    return _over_plain_table(results, (SEALED,), "µs sealed over plain")


def metrics_table(results: Results) -> list[str]:
    """What each metrics adapter adds to its store's row, both measured in this run."""
    return _over_plain_table(results, METERED, "µs with metrics over without")


def _over_plain_table(results: Results, suffixes: Sequence[str], title: str) -> list[str]:
    """Each row named with one of ``suffixes`` over the row named without it."""
    header = [title, *(SCENARIO_TITLES[s] for s in SCENARIOS)]
    rows = []
    for row in results.rows:
        suffix = next((end for end in suffixes if row.name.endswith(end)), None)
        if suffix is None:
            continue
        plain = row.name[: -len(suffix)]
        cells = []
        for scenario in SCENARIOS:
            sealed, base = results.overhead(row.name, scenario), results.overhead(plain, scenario)
            cells.append("n/a" if sealed is None or base is None else us(sealed - base, sign=True))
        rows.append([plain if len(suffixes) == 1 else row.name, *cells])
    return table(header, rows)


def floors_table(results: Results) -> list[str]:
    rows = [[name, us(value)] for name, value in results.floors.items()]
    for _, label, _, write_ops in STORE_FLOORS:  # the floor of a write: read, then write
        total = _sum(*(results.floors.get(f"{label} {op}") for op in write_ops))
        if total is not None:
            rows.append([f"{label} {' + '.join(write_ops)}", us(total)])
    return table(["raw operation", "µs"], rows)


def pieces_table(results: Results) -> list[str]:
    """Each unavoidable piece's median µs, net of calling it, and the cells it is part of."""
    rows = []
    for piece in results.pieces:
        timed = us(results.piece_us.get(piece.name))
        rows.append([piece.name, f"`{piece.timed}`", timed, piece.part_of()])
    return table(["piece", "timed", "µs", "in the floor of"], rows)


def floor_app_table(results: Results) -> list[str]:
    """The pieces' sums, the floor app and wsgi_session, over the bare WSGI app."""
    scenarios = [s for s in SCENARIOS if s != "untouched"]
    rows = []
    for store in FLOOR_STORES:
        rows.append(
            [
                f"{store}: the sum of its pieces",
                *(us(results.floor_sum(store, s)) for s in scenarios),
            ]
        )
        names = [FLOOR_ROW] if store == "memory" else []
        for name in [*names, f"wsgi_session {store}"]:
            rows.append([name, *(us(results.overhead(name, s), sign=True) for s in scenarios)])
    return table(["µs over the bare WSGI app", *(SCENARIO_TITLES[s] for s in scenarios)], rows)


@dataclass(frozen=True)
class Target:
    """One target: ``measured`` against ``limit``, a ratio (``x``) or µs over a reference."""

    text: str
    measured: float | None
    limit: float
    at_least: bool = False  # the value must reach the limit rather than stay under it
    detail: str = ""
    unit: str = "x"  # "x": a ratio; "µs": microseconds beyond the reference; "n": a count

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def value(self, number: float | None) -> str:
        if number is None:
            return "n/a"
        if self.unit == "n":
            return f"{number:g}"
        return f"{number:+.1f} µs" if self.unit == "µs" else f"{number:.2f}x"

    def row(self) -> list[str]:
        mark = {True: "✅ met", False: "❌ missed", None: "⬜ not measured"}[self.met]
        bound = "≥" if self.at_least else "≤"
        limit = {"µs": f"{self.limit:+g} µs", "n": f"{self.limit:g}"}.get(
            self.unit, f"{self.limit:g}x"
        )
        return [self.text, self.value(self.measured), f"{bound} {limit}", mark, self.detail]


def targets_table(found: Iterable[Target]) -> list[str]:
    return table(["target", "measured", "limit", "result", "from"], [t.row() for t in found])


def _over(
    text: str,
    measured: float | None,
    reference: float | None,
    limit: float,
    at_least: bool = False,
    unit: str = "µs",
) -> Target:
    """A target on the ratio ``measured / reference``."""
    if measured is None or reference is None or reference <= 0:
        return Target(text, None, limit, at_least)
    detail = f"{measured:.1f} {unit} vs {reference:.1f} {unit}"
    return Target(text, measured / reference, limit, at_least, detail)


def _beyond(text: str, measured: float | None, floor: float | None, budget: float) -> Target:
    """A target on ``measured - floor`` in µs: what a session adds beyond its unavoidable work."""
    if measured is None or floor is None:
        return Target(text, None, budget, unit="µs")
    detail = f"{measured:.1f} µs over the bare app"
    if floor:
        detail += f", floor {floor:.1f} µs"
    return Target(text, measured - floor, budget, detail=detail, unit="µs")


def _sum(*values: float | None) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) if len(known) == len(values) else None


# Each request's budget beyond its floor (µs): what the code may add to the store's work.
BARE_BUDGETS = (
    ("memory", "read", 8.0),
    ("memory", "write", 12.0),
    ("memory", "new", 10.0),
    ("cookie", "read", 8.0),
    ("cookie", "write", 14.0),
)
STORE_FLOORS = (  # (row store, floors' label, read floor, write floor)
    ("memcached", "memcached", ("GET",), ("GET", "SET")),
    ("redis", "Redis", ("GET",), ("GET", "SET")),
    ("sqlite", "SQLite", ("SELECT",), ("SELECT", "UPSERT")),
)
STORE_BUDGETS = {"read": 10.0, "write": 14.0}
FLASK_BUDGET = 5.0
HTTP_AT_LEAST = 1.3
# (our row, the peer's row): compared by throughput on the same app.
HTTP_RIVALS = (
    ("wsgi_session memcached", "Beaker memcached"),
    ("wsgi_session memcached (Flask)", "Flask-Session memcached"),
    ("wsgi_session redis", "Beaker redis"),
    ("wsgi_session redis (Flask)", "Flask-Session redis"),
)


def _throughput(
    text: str,
    http: dict[str, float] | None,
    ours: str,
    theirs: str,
    limit: float = HTTP_AT_LEAST,
) -> Target:
    """A target on the ratio of two HTTP throughputs (``"<row> <scenario>"`` keys)."""
    found = http or {}
    return _over(text, found.get(ours), found.get(theirs), limit, at_least=True, unit="req/s")


def _floor_context(results: Results, store: str, scenario: str) -> str:
    """What the same cell cannot skip (the floor table), to read a target's miss against."""
    parts = []
    total = results.floor_sum(store, scenario)
    if total is not None:
        parts.append(f"its unavoidable pieces {total:.1f} µs")
    if store == "memory":
        floor_app = results.overhead(FLOOR_ROW, scenario)
        if floor_app is not None:
            parts.append(f"the floor app {floor_app:+.1f} µs")
    return ", ".join(parts)


def floor_targets(results: Results, http: dict[str, float] | None) -> list[Target]:
    """The hot path at its floor: each request's cost beyond its unavoidable work."""
    o = results.overhead
    floors = results.floors
    found: list[Target] = []
    for store, scenario, budget in BARE_BUDGETS:
        target = _beyond(
            f"{store} store {SCENARIO_TITLES[scenario]} over the bare app",
            o(f"wsgi_session {store}", scenario),
            0.0,
            budget,
        )
        context = _floor_context(results, store, scenario)
        if target.measured is not None and context:
            target = replace(target, detail=f"{target.detail}; {context}")
        found.append(target)
    for store, label, read_ops, write_ops in STORE_FLOORS:
        for scenario, ops in (("read", read_ops), ("write", write_ops)):
            floor_name = " + ".join(f"raw {op}" for op in ops)
            found.append(
                _beyond(
                    f"{label} {scenario} over {floor_name}",
                    o(f"wsgi_session {store}", scenario),
                    _sum(*(floors.get(f"{label} {op}") for op in ops)),
                    STORE_BUDGETS[scenario],
                )
            )
    for store in STORES:
        for scenario in ("read", "write"):
            target = _beyond(
                f"Flask adapter, {store} {scenario}, over plain WSGI",
                o(f"wsgi_session {store} (Flask)", scenario),
                o(f"wsgi_session {store}", scenario),
                FLASK_BUDGET,
            )
            if target.measured is not None:  # the reference is the WSGI row, not a floor
                target = replace(target, detail=target.detail.replace("floor", "on plain WSGI"))
            found.append(target)
    for ours, peer in HTTP_RIVALS:
        for scenario in ("read", "write"):
            text = f"HTTP {scenario}, {ours} ≥ {HTTP_AT_LEAST}x {peer}"
            found.append(_throughput(text, http, f"{ours} {scenario}", f"{peer} {scenario}"))
    return found


def targets(results: Results, http: dict[str, float] | None) -> list[Target]:
    """The earlier targets: against the peers, and the bare app over HTTP."""
    o = results.overhead
    found: list[Target] = []

    beaker = [o(name, "untouched") for name in ("Beaker cookie", "Beaker memcached")]
    beaker_lazy = min((value for value in beaker if value is not None), default=None)
    for store in STORES:
        name = f"wsgi_session {store}"
        found.append(
            _over(
                f"{name} untouched ≤ 0.5x Beaker's lazy session",
                o(name, "untouched"),
                beaker_lazy,
                0.5,
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
    for scenario in ("read", "write"):
        text = f"HTTP {scenario} with memcached sessions ≥ 0.85x the bare app's throughput"
        found.append(
            _throughput(
                text, http, f"wsgi_session memcached {scenario}", f"bare WSGI app {scenario}", 0.85
            )
        )
    return found


# The commands a request cannot go below on a store (benchmarks/roundtrips.py): a
# read loads the record; a write loads it and compare-and-sets it; a login loads
# the anonymous record, creates the new one and retires the old id (so it stops
# working); a logout loads, then deletes only if unchanged (a compare-and-delete;
# today a compare-and-set to an ended marker, then a delete). An untouched request
# needs none, through Flask too when the cookie says the session is not permanent.
MINIMUM_COMMANDS = {"untouched": 0, "read": 1, "write": 2, "new": 1, "login": 3, "logout": 2}
# What the index may add: memcached has no multi-key write, so its index record
# is a gets and a cas of its own; Redis folds it into the session's command (a
# script), SQLite into the session's statement (the owner is a column of its row).
INDEX_EXTRA = {"memcached": 2, "redis": 0, "sqlite": 0}
FAR_AT_LEAST = 1.0  # with the store across a network, never slower than a peer
FAR_FEWER_TRIPS = 1.3  # and clearly faster where the peer makes more round trips
HTTP_USER_RIVALS = (  # (ours, peer, read limit, write limit)
    ("wsgi_session memcached (Flask)", "Flask-Session memcached", 1.3, 1.1),
    ("wsgi_session redis (Flask)", "Flask-Session redis", 1.3, 1.1),
    ("wsgi_session memcached", "Beaker memcached", 1.3, 1.1),
    ("wsgi_session redis", "Beaker redis", 1.3, 1.1),
)


def _session_cost_us(http: dict[str, float], row: str, bare: str, scenario: str) -> float | None:
    """1/throughput of ``row`` minus its bare app's, in µs (what the session adds a request)."""
    ours, base = http.get(f"{row} {scenario}"), http.get(f"{bare} {scenario}")
    if not ours or not base:
        return None
    return 1e6 / ours - 1e6 / base


def user_targets(
    http: dict[str, float] | None,
    trips: dict[tuple[str, str, str], float] | None,
    far: dict[str, float] | None = None,
) -> list[Target]:
    """The targets of the Flask path and of round trips (docs/benchmarks.md)."""
    found: list[Target] = []
    for ours, peer, read_limit, write_limit in HTTP_USER_RIVALS:
        for scenario, limit in (("read", read_limit), ("write", write_limit)):
            text = f"HTTP {scenario}, {ours} ≥ {limit}x {peer}"
            found.append(_throughput(text, http, f"{ours} {scenario}", f"{peer} {scenario}", limit))
    for store in ("memcached", "redis"):
        for scenario in ("read", "write"):
            text = f"HTTP {store} {scenario}: session cost through Flask minus on plain WSGI"
            if http is None:
                found.append(Target(text, None, FLASK_BUDGET, unit="µs"))
                continue
            flask = _session_cost_us(
                http, f"wsgi_session {store} (Flask)", "bare Flask app", scenario
            )
            plain = _session_cost_us(http, f"wsgi_session {store}", "bare WSGI app", scenario)
            if flask is None or plain is None:
                found.append(Target(text, None, FLASK_BUDGET, unit="µs"))
                continue
            detail = f"{flask:.1f} µs through Flask, {plain:.1f} µs on plain WSGI"
            found.append(Target(text, flask - plain, FLASK_BUDGET, detail=detail, unit="µs"))
    counted = trips or {}
    for store in INDEX_EXTRA:
        for subject in ("ours plain", "ours Flask"):
            found.append(_commands(store, subject, counted, MINIMUM_COMMANDS))
        least = {kind: MINIMUM_COMMANDS[kind] + INDEX_EXTRA[store] for kind in ("login", "logout")}
        for subject in ("ours plain, index", "ours Flask, index"):
            found.append(_commands(store, subject, counted, least))
    for ours, peer, _, _ in HTTP_USER_RIVALS:
        store = "redis" if "redis" in ours else "memcached"
        subject = "ours Flask" if "(Flask)" in ours else "ours plain"
        peer_subject = peer.rsplit(" ", 1)[0]
        for scenario in ("read", "write"):
            mine, theirs = (
                counted.get((subject, store, scenario)),
                counted.get((peer_subject, store, scenario)),
            )
            fewer = mine is not None and theirs is not None and mine < theirs
            limit = FAR_FEWER_TRIPS if fewer else FAR_AT_LEAST
            text = f"stores away (latency run): HTTP {scenario}, {ours} ≥ {limit}x {peer}"
            found.append(_throughput(text, far, f"{ours} {scenario}", f"{peer} {scenario}", limit))
    return found


def _commands(
    store: str,
    subject: str,
    counted: dict[tuple[str, str, str], float],
    least: dict[str, int],
) -> Target:
    """Commands beyond the minimum, summed over the request kinds of ``least``."""
    text = f"store commands over the minimum, {subject}, {store}"
    found = {kind: counted.get((subject, store, kind)) for kind in least}
    if None in found.values():
        return Target(text, None, 0, unit="n")
    detail = ", ".join(f"{kind} {found[kind]:g} (min {n})" for kind, n in least.items())
    excess = sum(max(0.0, (found[kind] or 0) - n) for kind, n in least.items())
    return Target(text, excess, 0, detail=detail, unit="n")
