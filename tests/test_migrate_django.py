"""Adopting the sessions of Django's own engines (``WSGI_SESSION_MIGRATE_FROM``).

The old stack is Django with one of its engines (db on SQLite, cache on a real
redis-server, signed_cookies) and a real auth login; the new one is the same
project with ``SESSION_ENGINE = "wsgi_session.django.engine"`` (or the
middleware) and the migration setting. The browser's cookie crosses over.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client, override_settings
from django.urls import path
from django_setup import PASSWORD, USER, drop_unused_middlewares, example_settings
from redis_server import RedisServer

from wsgi_session import ConfigurationError

COOKIE = "sessionid"
ENGINES = "django.contrib.sessions.backends."
STOCK_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]


def read(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {"data": dict(request.session.items()), "user": str(request.user.get_username())}
    )


def cart(request: HttpRequest) -> HttpResponse:
    request.session["cart"] = [1, 2]
    return HttpResponse("ok")


def logout_view(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth import logout

    logout(request)
    return HttpResponse("bye")


urlpatterns = [
    path("m/read/", read),
    path("m/cart/", cart),
    path("m/logout/", logout_view),
]


@pytest.fixture(autouse=True)
def django_with_sessions_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example project, with django.contrib.sessions installed and its table created."""
    from django.conf import settings

    drop_unused_middlewares()  # a cookie-store one of an earlier test would refuse migrate_from
    with example_settings(tmp_path_factory, __name__, CSRF_USE_SESSIONS=False) as files:
        apps = [*settings.INSTALLED_APPS, "django.contrib.sessions"]
        with override_settings(INSTALLED_APPS=apps):
            from django.core.management import call_command

            call_command("migrate", "sessions", verbosity=0)
            yield files


@contextlib.contextmanager
def old_stack(engine: str, **settings: Any) -> Iterator[None]:
    with override_settings(
        SESSION_ENGINE=ENGINES + engine, MIDDLEWARE=STOCK_MIDDLEWARE, **settings
    ):
        yield


@contextlib.contextmanager
def new_stack(engine: str, store_url: str, **settings: Any) -> Iterator[None]:
    with override_settings(
        SESSION_ENGINE="wsgi_session.django.engine",
        MIDDLEWARE=STOCK_MIDDLEWARE,
        WSGI_SESSION_STORE=store_url,
        WSGI_SESSION_MIGRATE_FROM=ENGINES + engine,
        **settings,
    ):
        yield


def logged_in(engine: str, **settings: Any) -> str:
    """Log in through Django's auth on the old stack, put a cart in; the cookie kept."""
    with old_stack(engine, **settings):
        client = Client()
        assert client.post("/login/", {"username": USER, "password": PASSWORD}).status_code == 302
        client.get("/m/cart/")
        assert client.get("/m/read/").json()["user"] == USER
        return client.cookies[COOKIE].value


def with_cookie(value: str) -> Client:
    client = Client()
    client.cookies[COOKIE] = value
    return client


@pytest.fixture
def redis_cache(redis_server: RedisServer) -> dict[str, Any]:
    return {
        "CACHES": {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis_server.url,
            }
        }
    }


@pytest.mark.parametrize("engine", ["db", "cache", "cached_db", "file", "signed_cookies"])
def test_a_django_auth_login_carries_over_to_the_engine(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings: dict[str, Any] = {"SESSION_FILE_PATH": str(tmp_path)}
    if engine in ("cache", "cached_db"):
        settings.update(request.getfixturevalue("redis_cache"))
    old_cookie = logged_in(engine, **settings)
    store_url = f"sqlite:///{tmp_path / 'new.db'}"
    with new_stack(engine, store_url, **settings):
        client = with_cookie(old_cookie)

        response = client.get("/m/read/")

        answer = response.json()
        assert answer["user"] == USER  # _auth_user_id, _backend and _hash carried over
        assert answer["data"]["cart"] == [1, 2]
        assert {"_auth_user_id", "_auth_user_backend", "_auth_user_hash"} <= set(answer["data"])
        sent = response.cookies[COOKIE]
        assert sent.value and sent.value != old_cookie
        assert client.get("/m/read/").json()["user"] == USER  # on our cookie now
        if engine != "signed_cookies":  # the old record is gone
            from django.utils.module_loading import import_string

            old_store = import_string(ENGINES + engine + ".SessionStore")
            assert not old_store().exists(old_cookie)


def test_a_replay_after_the_grace_window_or_a_logout_opens_nothing(tmp_path: Path) -> None:
    old_cookie = logged_in("signed_cookies")  # no old record to delete: the mark refuses it
    with new_stack("signed_cookies", f"sqlite:///{tmp_path / 'new.db'}"):
        client = with_cookie(old_cookie)
        assert client.get("/m/read/").json()["user"] == USER
        client.get("/m/logout/")
        assert with_cookie(old_cookie).get("/m/read/").json()["user"] == ""
    with new_stack(
        "signed_cookies", f"sqlite:///{tmp_path / 'new.db'}", WSGI_SESSION_MIGRATE_GRACE=0
    ):
        assert with_cookie(old_cookie).get("/m/read/").json()["user"] == ""


def test_a_forged_signed_cookie_or_an_unknown_key_is_a_fresh_session(tmp_path: Path) -> None:
    old_cookie = logged_in("signed_cookies")
    with new_stack("signed_cookies", f"sqlite:///{tmp_path / 'new.db'}"):
        forged = old_cookie[:-3] + ("AAA" if not old_cookie.endswith("AAA") else "BBB")
        assert with_cookie(forged).get("/m/read/").json() == {"data": {}, "user": ""}
    with new_stack("db", f"sqlite:///{tmp_path / 'new.db'}"):
        unknown = "a" * 32
        assert with_cookie(unknown).get("/m/read/").json() == {"data": {}, "user": ""}


def test_the_wsgi_middleware_mode_adopts_too(tmp_path: Path) -> None:
    from django.core.handlers.wsgi import WSGIHandler
    from werkzeug.test import Client as WSGIClient

    from wsgi_session.django import make_middleware

    old_cookie = logged_in("db")
    with override_settings(
        WSGI_SESSION_MIGRATE_FROM=ENGINES + "db",
        WSGI_SESSION_STORE=f"sqlite:///{tmp_path / 'new.db'}",
    ):
        client = WSGIClient(make_middleware(WSGIHandler()))
        client.set_cookie(COOKIE, old_cookie)
        assert client.get("/m/read/").json["user"] == USER  # type: ignore[index]


def test_a_pickling_serializer_is_refused_at_start_up(tmp_path: Path) -> None:
    from wsgi_session.migrate.base import Host, OldCookie
    from wsgi_session.migrate.django_engines import DjangoEngineSource

    host = Host(b"k" * 32, (), OldCookie(COOKIE), 3600)
    with (
        override_settings(SESSION_SERIALIZER="myproject.serializers.PickleSerializer"),
        pytest.raises(ConfigurationError, match="unpickles"),
    ):
        DjangoEngineSource(ENGINES + "db", host)


def test_what_is_left_of_an_old_db_session_is_its_rows(tmp_path: Path) -> None:
    from datetime import timedelta

    from django.contrib.sessions.models import Session as Row
    from django.utils import timezone

    from wsgi_session.migrate.base import Host, OldCookie
    from wsgi_session.migrate.django_engines import DjangoEngineSource

    old_cookie = logged_in("db")
    Row.objects.filter(session_key=old_cookie).update(
        expire_date=timezone.now() + timedelta(seconds=600)  # saved long ago: 10 minutes left
    )
    source = DjangoEngineSource(ENGINES + "db", Host(b"k" * 32, (), OldCookie(COOKIE), 3600))
    claim = source.claim(old_cookie)
    assert claim is not None and 590 < (claim.remaining or 0) <= 600
