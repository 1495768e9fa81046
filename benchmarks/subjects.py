"""The rows of the table: each one registered by a small function building its app.

A row whose library (or store module) cannot be imported is reported as
unavailable with the reason, and the rest of the run goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.apps import SECRET, WSGIApp, bare_app, flask_app, session_app


@dataclass
class Context:
    """What a row may use: the payload, the benchmark's memcached and Redis, a scratch directory."""

    data: dict[str, Any]
    memcached: str
    tmpdir: Path
    redis: str = ""
    sqlite_name: str = "sessions.sqlite3"

    def sqlite_path(self) -> Path:
        return self.tmpdir / self.sqlite_name


@dataclass(frozen=True)
class Row:
    name: str
    framework: str  # "wsgi" or "flask": which bare app it is measured over
    family: str  # "bare", "floor" (benchmarks/unavoidable.py), "ours" or "peer"
    store: str  # "memory", "sqlite", "memcached", "redis", "cookie" or "-"
    build: Callable[[Context], WSGIApp]


ROWS: list[Row] = []


def row(name: str, framework: str, family: str, store: str = "-") -> Callable[..., Any]:
    def register(build: Callable[[Context], WSGIApp]) -> Callable[[Context], WSGIApp]:
        ROWS.append(Row(name, framework, family, store, build))
        return build

    return register


# -- baselines ------------------------------------------------------------


@row("bare WSGI app", "wsgi", "bare")
def _bare_wsgi(ctx: Context) -> WSGIApp:
    return bare_app(ctx.data)


@row("bare Flask app", "flask", "bare")
def _bare_flask(ctx: Context) -> WSGIApp:
    return flask_app(ctx.data)  # type: ignore[no-any-return]


FLOOR_ROW = "floor app (memory, inlined)"


@row(FLOOR_ROW, "wsgi", "floor", "memory")
def _floor(ctx: Context) -> WSGIApp:
    from benchmarks.unavoidable import floor_app

    return floor_app(ctx.data)


# -- wsgi_session -----------------------------------------------------------


def make_store(kind: str, ctx: Context) -> Any:
    """A wsgi_session store of ``kind``; imported here so a missing module only loses its rows."""
    if kind == "memory":
        from wsgi_session.stores.memory import MemoryStore

        return MemoryStore()
    if kind == "sqlite":
        from wsgi_session.stores.sqlite import SQLiteStore

        return SQLiteStore(ctx.sqlite_path())
    if kind == "memcached":
        from wsgi_session.stores.memcached import MemcachedStore

        return MemcachedStore(ctx.memcached)
    if kind == "redis":
        from wsgi_session.stores.redis import RedisStore

        return RedisStore(f"redis://{ctx.redis}")
    if kind == "cookie":
        from wsgi_session import CookieStore

        return CookieStore()
    raise ValueError(kind)


STORES = ("memory", "sqlite", "memcached", "redis", "cookie")
SEALED = " sealed"  # the row suffix of seal_records=True, measured next to the plain row
# The row suffixes of metrics=..., each measured next to the plain row (docs/operations.md).
PROMETHEUS = " + Prometheus"
OPENTELEMETRY = " + OpenTelemetry"
METERED = (PROMETHEUS, OPENTELEMETRY)
METERED_STORES = ("memory", "memcached")


def ours_wsgi(store: Any, data: dict[str, Any], **options: Any) -> WSGIApp:
    from wsgi_session import SessionMiddleware

    app = session_app(lambda environ: environ["wsgi_session"], data)
    return SessionMiddleware(app, SECRET, store=store, **options)


def ours_flask(store: Any, data: dict[str, Any], **options: Any) -> WSGIApp:
    from wsgi_session.flask import Session

    return flask_app(data, lambda app: Session(app, store=store, **options))  # type: ignore[no-any-return]


def _register_ours() -> None:
    for kind in STORES:
        row(f"wsgi_session {kind}", "wsgi", "ours", kind)(
            lambda ctx, kind=kind: ours_wsgi(make_store(kind, ctx), ctx.data)
        )
        if kind != "cookie":  # the cookie store keeps no records (it has encrypt=True)
            row(f"wsgi_session {kind}{SEALED}", "wsgi", "ours", kind)(
                lambda ctx, kind=kind: ours_wsgi(make_store(kind, ctx), ctx.data, seal_records=True)
            )
    # A deployment adopting Flask's cookie sessions (docs/migrating.md): what its
    # requests with our own cookie pay for the setting.
    row("wsgi_session memory migrating", "wsgi", "ours", "memory")(
        lambda ctx: ours_wsgi(make_store("memory", ctx), ctx.data, migrate_from="flask")
    )
    for kind in STORES:
        row(f"wsgi_session {kind} (Flask)", "flask", "ours", kind)(
            lambda ctx, kind=kind: ours_flask(make_store(kind, ctx), ctx.data)
        )
    for kind in METERED_STORES:
        row(f"wsgi_session {kind}{PROMETHEUS}", "wsgi", "ours", kind)(
            lambda ctx, kind=kind: ours_wsgi(
                make_store(kind, ctx), ctx.data, metrics=prometheus_metrics()
            )
        )
        row(f"wsgi_session {kind}{OPENTELEMETRY}", "wsgi", "ours", kind)(
            lambda ctx, kind=kind: ours_wsgi(
                make_store(kind, ctx), ctx.data, metrics=opentelemetry_metrics()
            )
        )


def prometheus_metrics() -> Any:
    """The Prometheus adapter on a registry of its own, as an application's /metrics reads it."""
    from prometheus_client import CollectorRegistry

    from wsgi_session.metrics import PrometheusMetrics

    return PrometheusMetrics(CollectorRegistry())


def opentelemetry_metrics() -> Any:
    """The OpenTelemetry adapter on the SDK, with a reader that exports on demand only."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from wsgi_session.metrics import OpenTelemetryMetrics

    return OpenTelemetryMetrics(MeterProvider(metric_readers=[InMemoryMetricReader()]))


_register_ours()


# -- peers ------------------------------------------------------------------


@row("Flask built-in cookie", "flask", "peer", "cookie")
def _flask_cookie(ctx: Context) -> WSGIApp:
    return flask_app(ctx.data, lambda app: None)  # type: ignore[no-any-return]


def pymemcache_client(address: str, noreply: bool) -> Any:
    from pymemcache.client.base import Client

    return Client(address, no_delay=True, default_noreply=noreply)


def _flask_session_regenerate(session: Any) -> None:
    from flask import current_app

    current_app.session_interface.regenerate(session)  # Flask-Session's own call for it


def _clear(session: Any) -> None:
    session.clear()  # Flask-Session deletes an emptied session's record and cookie


def flask_session(ctx: Context, configure: Callable[[Any], None]) -> WSGIApp:
    return flask_app(  # type: ignore[no-any-return]
        ctx.data, configure, login=_flask_session_regenerate, logout=_clear
    )


@row("Flask-Session memcached", "flask", "peer", "memcached")
def _flask_session(ctx: Context) -> WSGIApp:
    from flask_session import Session

    def configure(app: Any) -> None:
        app.config["SESSION_TYPE"] = "memcached"
        # Acknowledged writes, like ours; pymemcache's default is noreply.
        app.config["SESSION_MEMCACHED"] = pymemcache_client(ctx.memcached, noreply=False)
        Session(app)

    return flask_session(ctx, configure)


@row("Flask-Session redis", "flask", "peer", "redis")
def _flask_session_redis(ctx: Context) -> WSGIApp:
    import redis
    from flask_session import Session

    def configure(app: Any) -> None:
        app.config["SESSION_TYPE"] = "redis"
        # redis-py's default client (Flask-Session's own default is this client on
        # localhost:6379); only the address is the benchmark's.
        host, port = ctx.redis.rsplit(":", 1)
        app.config["SESSION_REDIS"] = redis.Redis(host=host, port=int(port))
        Session(app)

    return flask_session(ctx, configure)


def beaker(ctx: Context, **options: str) -> WSGIApp:
    from beaker.middleware import SessionMiddleware

    def save(session: Any) -> None:
        session.save()

    def regenerate_id(session: Any) -> None:
        session.regenerate_id()

    def delete(session: Any) -> None:
        session.delete()

    app = session_app(
        lambda environ: environ["beaker.session"], ctx.data, save, regenerate_id, delete
    )
    config = {"session.key": "session", "session.validate_key": SECRET}
    config.update({f"session.{name}": value for name, value in options.items()})
    return SessionMiddleware(app, config)  # type: ignore[no-any-return]


@row("Beaker cookie", "wsgi", "peer", "cookie")
def _beaker_cookie(ctx: Context) -> WSGIApp:
    return beaker(ctx, type="cookie")


@row("Beaker memcached", "wsgi", "peer", "memcached")
def _beaker_memcached(ctx: Context) -> WSGIApp:
    # Beaker's memcached backend speaks through python-memcached, pylibmc or
    # bmemcached, not pymemcache.
    return beaker(ctx, type="ext:memcached", url=ctx.memcached, memcache_module="memcache")


@row("Beaker redis", "wsgi", "peer", "redis")
def _beaker_redis(ctx: Context) -> WSGIApp:
    # Beaker's Redis backend (beaker.ext.redisnm) on redis-py.
    return beaker(ctx, type="ext:redis", url=f"redis://{ctx.redis}")
