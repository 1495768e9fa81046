"""Sessions in PostgreSQL: our stores beside the raw statements and the peers, on one server.

One run, on a PostgreSQL of its own: the raw psycopg SELECT and UPDATE of a
record the size of ours (the floor), ``PostgresStore`` calls, and requests
(read, write, a new session) through the bare apps, ours and the peers:
wsgi_session's PostgresStore (plain WSGI and Flask), Flask-Session's
SQLAlchemy store, Django's ``db`` engine and our engine on ``django://default``.
Rows are interleaved round by round, so the
machine's drift hits them all alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.apps import WSGIApp, bare_app, flask_app
from benchmarks.floors import floor_keys, session_record
from benchmarks.servers import Postgres
from benchmarks.subjects import ours_flask, ours_wsgi
from benchmarks.table import scenario_envs
from benchmarks.timing import Failed, median_us, sample_calls, sample_wsgi, seed

SCENARIOS = ("read", "write", "new")
TTL = 3600


def _flask_session_sqlalchemy(url: str, data: dict[str, Any]) -> WSGIApp:
    from flask_session import Session
    from flask_sqlalchemy import SQLAlchemy

    def configure(app: Any) -> None:
        app.config["SQLALCHEMY_DATABASE_URI"] = url.replace(
            "postgresql://", "postgresql+psycopg://"
        )
        app.config["SESSION_TYPE"] = "sqlalchemy"
        db = SQLAlchemy(app)
        app.config["SESSION_SQLALCHEMY"] = db
        Session(app)
        with app.app_context():
            db.create_all()

    return flask_app(data, configure)  # type: ignore[no-any-return]


def subjects(server: Postgres, data: dict[str, Any]) -> dict[str, tuple[str, WSGIApp]]:
    """Each row's app and the bare app it is measured over."""
    from benchmarks import django_app
    from wsgi_session import PostgresStore

    host, port = server.address.rsplit(":", 1)
    django_app.configure(host, int(port), data)
    ours_engine = "wsgi_session.django.engine"
    return {
        "bare WSGI app": ("", bare_app(data)),
        "wsgi_session postgres": (
            "bare WSGI app",
            ours_wsgi(PostgresStore(server.url, table="bench_wsgi"), data),
        ),
        "bare Flask app": ("", flask_app(data)),
        "wsgi_session postgres (Flask)": (
            "bare Flask app",
            ours_flask(PostgresStore(server.url, table="bench_flask"), data),
        ),
        "Flask-Session sqlalchemy": ("bare Flask app", _flask_session_sqlalchemy(server.url, data)),
        "bare Django app": ("", django_app.handler(django_app.BARE)),
        "Django db engine": (
            "bare Django app",
            django_app.handler(django_app.SESSIONS, "django.contrib.sessions.backends.db"),
        ),
        "wsgi_session django:// (Django)": (
            "bare Django app",
            django_app.handler(django_app.SESSIONS, ours_engine),
        ),
    }


def floor_ops(server: Postgres, value: bytes) -> dict[str, Callable[[int], object]]:
    """Raw psycopg statements (autocommit, prepared) and the store's calls, on one record."""
    import time

    import psycopg

    from wsgi_session import PostgresStore

    store = PostgresStore(server.url, table="bench_floor")
    (key,) = floor_keys(1, "postgres-floor")
    store.save(key, value, TTL)
    connection = psycopg.connect(server.url, autocommit=True)
    select = 'SELECT data, version FROM "bench_floor" WHERE key = %s AND expires > %s'
    update = (
        'UPDATE "bench_floor" SET data = %s, version = version + 1, expires = %s '
        "WHERE key = %s AND expires > %s"
    )

    def raw_select(i: int) -> object:
        return connection.execute(select, (key, time.time()), prepare=True).fetchone()

    def raw_update(i: int) -> object:
        now = time.time()
        return connection.execute(update, (value, now + TTL, key, now), prepare=True).rowcount

    def raw_both(i: int) -> object:
        raw_select(i)
        return raw_update(i)

    def load(i: int) -> object:
        return store.load(key)

    def load_and_save(i: int) -> object:
        found = store.load(key)
        assert found is not None
        return store.save(key, value, TTL, found[1])

    return {
        "psycopg SELECT": raw_select,
        "psycopg UPDATE": raw_update,
        "psycopg SELECT + UPDATE": raw_both,
        "PostgresStore.load": load,
        "PostgresStore.load + save (compare-and-set)": load_and_save,
    }


def run(
    data: dict[str, Any], rounds: int, count: int, progress: Callable[[str], None]
) -> list[str]:
    """The section's markdown lines."""
    record = session_record(data)
    with Postgres() as server:
        progress("PostgreSQL: building the rows")
        apps = subjects(server, data)
        envs = {
            name: scenario_envs(None if not bare else seed(app, name))
            for name, (bare, app) in apps.items()
        }
        ops = floor_ops(server, record)
        samples: dict[tuple[str, str], list[int]] = {}
        failed: dict[str, str] = {}
        for number in range(rounds):
            progress(f"PostgreSQL: round {number + 1}/{rounds}")
            for name, (_, app) in apps.items():
                if name in failed:
                    continue
                try:
                    for scenario in SCENARIOS:
                        out = samples.setdefault((name, scenario), [])
                        sample_wsgi(app, envs[name][scenario], count, out, name)
                except Failed as error:
                    failed[name] = str(error)
            for name, op in ops.items():
                sample_calls(op, count, samples.setdefault(("floor", name), []))
        server_version = _server_version(server)
    medians = {cell: median_us(values) for cell, values in samples.items()}
    lines = [
        f"### Sessions in PostgreSQL ({server_version}, same run, median µs)",
        "",
        f"Record of {len(record)} bytes; {rounds} rounds x {count} calls per cell. "
        "Requests: the median per request, and in brackets what it costs over its bare app.",
        "",
        "| request | " + " | ".join(SCENARIOS) + " |",
        "|---|" + "---:|" * len(SCENARIOS),
    ]
    for name, (bare, _) in apps.items():
        if name in failed:
            continue
        cells = []
        for scenario in SCENARIOS:
            value = medians[(name, scenario)]
            over = "" if not bare else f" (+{value - medians[(bare, scenario)]:.0f})"
            cells.append(f"{value:.0f}{over}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| one call on a stored record | µs |", "|---|---:|"]
    lines += [f"| {name} | {medians[('floor', name)]:.0f} |" for name in ops]
    if failed:
        lines += ["", "Not measured:", ""] + [f"- {name}: {why}" for name, why in failed.items()]
    return lines


def _server_version(server: Postgres) -> str:
    import psycopg

    with psycopg.connect(server.url) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0].split()[0]}" if row else "PostgreSQL"
