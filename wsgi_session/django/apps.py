"""``"wsgi_session.django"`` in ``INSTALLED_APPS``: the engine's settings checked at start-up."""

from __future__ import annotations

from django.apps import AppConfig


class WSGISessionConfig(AppConfig):
    """Registers the engine's system check (:func:`wsgi_session.django.engine.check_settings`).

    The engine itself needs no app; without this one, ``manage.py check`` sees
    the engine's check only if something imported the engine before it ran.
    """

    name = "wsgi_session.django"
    label = "wsgi_session"
    verbose_name = "wsgi_session"

    def ready(self) -> None:
        from wsgi_session.django import engine  # noqa: F401 -- registers check_settings
