"""Django, configured once per test process with the example project's settings.

Django cannot be configured twice, so every test module that drives Django
shares this: the example's settings, its user table and session file in a
temporary directory, and two users.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from collections.abc import Iterator
from pathlib import Path

import django
import pytest
from django.test import override_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "django_project"
USER, PASSWORD = "alice", "wonderland-0123"
FAST_HASHING = ["django.contrib.auth.hashers.MD5PasswordHasher"]

_files: list[Path] = []


def django_project_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Set Django up on first use; the directory holding its database and sessions."""
    if _files:
        return _files[0]
    files = tmp_path_factory.mktemp("django")
    with pytest.MonkeyPatch.context() as patch:
        # Read once, when django.setup() loads the settings; restored afterwards.
        patch.setenv("DJANGO_SETTINGS_MODULE", "django_demo.settings")
        patch.setenv("DJANGO_DEMO_DB", str(files / "users.db"))
        patch.setenv("DJANGO_DEMO_SESSIONS", f"sqlite://{files / 'sessions.db'}")
        patch.syspath_prepend(str(EXAMPLE))
        django.setup()
        from django.contrib.auth.models import User
        from django.core.management import call_command

        with override_settings(PASSWORD_HASHERS=FAST_HASHING):
            call_command("migrate", verbosity=0)
            User.objects.create_superuser(USER, password=PASSWORD)
            User.objects.create_user("bob", password=PASSWORD)
    _files.append(files)
    return files


def drop_unused_middlewares() -> None:
    """Free the middlewares earlier tests dropped, before a test changes a setting.

    Each middleware listens to ``setting_changed`` (weakly) until it is freed;
    one held only by a reference cycle lives on until the cyclic collector
    runs, and would rebuild itself for this test's settings: a cookie-store
    one refuses ``WSGI_SESSION_SEAL_RECORDS=True``, and rightly so.
    """
    gc.collect()


@contextlib.contextmanager
def example_settings(
    tmp_path_factory: pytest.TempPathFactory, urlconf: str, **settings: object
) -> Iterator[Path]:
    """Django set up, the test module ``urlconf``'s views in front of the example's URLs.

    ``settings`` override the example's for as long as this lasts; passwords
    hash fast, since the tests log in often.
    """
    files = django_project_files(tmp_path_factory)
    from django.urls import URLResolver, include, path

    urlpatterns = importlib.import_module(urlconf).urlpatterns
    if not any(
        isinstance(pattern, URLResolver) and pattern.urlconf_name is _example_urls()
        for pattern in urlpatterns
    ):
        urlpatterns.append(path("", include("django_demo.urls")))
    with override_settings(ROOT_URLCONF=urlconf, PASSWORD_HASHERS=FAST_HASHING, **settings):
        yield files


def _example_urls() -> object:
    return importlib.import_module("django_demo.urls")
