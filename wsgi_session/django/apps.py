"""``INSTALLED_APPS += ["wsgi_session.django"]``: the ``django://`` store's table, the checks."""

from __future__ import annotations

from django.apps import AppConfig


class WSGISessionConfig(AppConfig):
    """The app whose migration creates the ``django://`` store's table."""

    name = "wsgi_session.django"
    label = "wsgi_session"
    verbose_name = "wsgi_session"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from wsgi_session.django import checks  # registers them

        del checks
