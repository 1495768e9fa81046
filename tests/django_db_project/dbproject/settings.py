"""A Django project keeping its sessions in its own database: ``django://default``.

The database comes from the environment, so one project runs on each backend:
``DBTEST_ENGINE`` (postgresql, mysql, sqlite3), ``DBTEST_PORT``, ``DBTEST_PASSWORD``,
``DBTEST_FILES`` (where SQLite's files go). Every view runs in a transaction.
"""

from __future__ import annotations

import os
from pathlib import Path

ENGINE = os.environ["DBTEST_ENGINE"]
FILES = Path(os.environ["DBTEST_FILES"])

if ENGINE == "sqlite3":
    DATABASE = {
        "NAME": str(FILES / "app.sqlite3"),
        # A file, not Django's in-memory default: the tests' threads share it.
        "TEST": {"NAME": str(FILES / "test.sqlite3")},
    }
else:
    DATABASE = {
        "NAME": "postgres" if ENGINE == "postgresql" else "app",
        "HOST": "127.0.0.1",
        "PORT": os.environ["DBTEST_PORT"],
        "USER": os.environ["DBTEST_USER"],
        "PASSWORD": os.environ.get("DBTEST_PASSWORD", ""),
    }
DATABASES = {
    "default": {"ENGINE": f"django.db.backends.{ENGINE}", "ATOMIC_REQUESTS": True, **DATABASE}
}

SECRET_KEY = "django-db-store-test-secret-0123456789abcdef0123456789"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",  # for manage.py clearsessions
    "wsgi_session.django",
    "dbtests",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SESSION_ENGINE = "wsgi_session.django.engine"
WSGI_SESSION_STORE = os.environ.get("DBTEST_STORE", "django://default")
ROOT_URLCONF = "dbproject.urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
