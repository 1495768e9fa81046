"""The demo with the one-setting engine: Django's own SessionMiddleware, a stock wsgi.py.

    cd examples/django_project
    DJANGO_SETTINGS_MODULE=django_demo.settings_engine python manage.py migrate
    DJANGO_SETTINGS_MODULE=django_demo.settings_engine \\
        gunicorn 'django.core.wsgi:get_wsgi_application()'

Everything else is the demo's settings (``settings.py``): the store is
``WSGI_SESSION_STORE``.
"""

from django_demo.settings import *  # noqa: F403

SESSION_ENGINE = "wsgi_session.django.engine"
# Django's own middleware, where the wsgi.py mode names wsgi_session's.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware"
    if name == "wsgi_session.django.SessionMiddleware"
    else name
    for name in MIDDLEWARE  # noqa: F405
]
# For `manage.py clearsessions`; its table is not used.
INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.sessions"]  # noqa: F405
