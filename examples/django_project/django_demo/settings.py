"""Settings of the demo project.

What differs from a stock project: ``django.contrib.sessions`` is gone from
INSTALLED_APPS (no session table), and MIDDLEWARE names
``wsgi_session.django.SessionMiddleware`` where Django's was. The sessions
themselves are kept by the WSGI middleware that ``wsgi.py`` puts around Django.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# Set DJANGO_SECRET_KEY in production: it signs the session cookie too.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-demo-key-change-me-0123456789abcdef")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django_demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "wsgi_session.django.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "django_demo.urls"
WSGI_APPLICATION = "django_demo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Only the users live in the database; sessions do not.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DEMO_DB", str(BASE_DIR / "users.db")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The CSRF secret and the flash messages live in the session.
CSRF_USE_SESSIONS = True
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Where wsgi_session keeps the sessions: a store URL such as
# memcached://10.0.0.5:11211,10.0.0.6:11211 for several machines.
WSGI_SESSION_STORE = os.environ.get("DJANGO_DEMO_SESSIONS", f"sqlite://{BASE_DIR / 'sessions.db'}")

# Read by wsgi_session.django.make_middleware too (these are Django's defaults).
SESSION_COOKIE_NAME = "sessionid"
SESSION_COOKIE_AGE = 14 * 24 * 3600
SESSION_EXPIRE_AT_BROWSER_CLOSE = False

STATIC_URL = "static/"

USE_TZ = True
TIME_ZONE = "UTC"
