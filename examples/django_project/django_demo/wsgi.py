"""The WSGI application: Django, wrapped in the session middleware.

``make_middleware`` reads SECRET_KEY, WSGI_SESSION_STORE and the SESSION_*
settings, so this file stays the same in development, tests and production.
"""

import os

from django.core.wsgi import get_wsgi_application

from wsgi_session.django import make_middleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_demo.settings")

application = make_middleware(get_wsgi_application())
