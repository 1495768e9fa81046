"""The benchmark's Django project: the handlers of ``apps.session_app`` as Django views.

Configured by :func:`configure` (once a process: Django cannot be set up twice)
on the benchmark's PostgreSQL, with persistent connections (``CONN_MAX_AGE=None``),
as a production site runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from benchmarks.apps import SECRET, USER_ID

DATA: dict[str, Any] = {}
_counter = itertools.count()


def configure(host: str, port: int, data: dict[str, Any]) -> None:
    import django
    from django.conf import settings
    from django.core.management import call_command

    DATA.update(data)
    settings.configure(
        DEBUG=False,
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS=["localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.sessions", "wsgi_session.django"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": host,
                "PORT": str(port),
                "USER": "postgres",
                "NAME": "postgres",
                "CONN_MAX_AGE": None,
            }
        },
        MIDDLEWARE=[],
        WSGI_SESSION_STORE="django://default",
        USE_TZ=True,
    )
    django.setup()
    call_command("migrate", verbosity=0)


def handler(middleware: list[str], engine: str | None = None) -> Any:
    """A Django WSGI handler with ``middleware`` and, if given, that ``SESSION_ENGINE``."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    # The session middleware reads SESSION_ENGINE when it is built, with the handler.
    with override_settings(MIDDLEWARE=middleware, SESSION_ENGINE=engine or "unused"):
        return WSGIHandler()


SESSIONS = ["django.contrib.sessions.middleware.SessionMiddleware"]
BARE = ["benchmarks.django_app.unsaved_session"]


def unsaved_session(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The baseline's middleware: a dict for a session, never loaded or saved."""

    def middleware(request: Any) -> Any:
        request.session = dict(DATA)
        return get_response(request)

    return middleware


def _ok(status: int = 200) -> Any:
    from django.http import HttpResponse

    return HttpResponse(b"ok", content_type="text/plain", status=status)


def untouched(request: Any) -> Any:
    return _ok()


def read(request: Any) -> Any:
    return _ok(200 if request.session.get("user_id") == USER_ID else 404)


def write(request: Any) -> Any:
    request.session["n"] = next(_counter)
    return _ok()


def new(request: Any) -> Any:
    request.session["user_id"] = USER_ID
    return _ok()


def seed(request: Any) -> Any:
    request.session.update(DATA)
    return _ok()


def __getattr__(name: str) -> Any:
    # The URLs are built when Django first resolves one, after configure().
    if name == "urlpatterns":
        from django.urls import path

        return [path(view.__name__, view) for view in (untouched, read, write, new, seed)]
    raise AttributeError(name)
