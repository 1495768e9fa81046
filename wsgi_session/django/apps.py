"""``"wsgi_session.django"`` in ``INSTALLED_APPS``: the system checks, the ``django://`` table."""

from __future__ import annotations

from django.apps import AppConfig


class WSGISessionConfig(AppConfig):
    """Registers the system checks; its migration creates the ``django://`` store's table.

    The engine itself needs no app; without this one, ``manage.py check`` sees
    the engine's check only if something imported the engine before it ran.
    """

    name = "wsgi_session.django"
    label = "wsgi_session"
    verbose_name = "wsgi_session"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from wsgi_session.django import (
            checks,  # noqa: F401 -- registers the store's checks
            engine,  # noqa: F401 -- registers check_settings
        )
