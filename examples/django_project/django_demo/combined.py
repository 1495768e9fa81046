"""One session for a Django project and a Flask app mounted beside it in one process.

The one thing only the ``wsgi.py`` mode can do: the session middleware wraps
werkzeug's dispatcher, so Django (at ``/``) and Flask (at ``/flask``) see the
same session. Log in through Django's login form; Flask's ``session`` then
holds ``_auth_user_id`` as ``django.contrib.auth`` put it there::

    cd examples/django_project
    gunicorn django_demo.combined:application

Django's settings give the cookie, the keys and the store (``WSGI_SESSION_STORE``);
Flask's ``Session`` finds the session already open and shares it.
"""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from flask import Flask, session
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from wsgi_session.django import make_middleware
from wsgi_session.flask import Session

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_demo.settings")
django_app = get_wsgi_application()

flask_app = Flask(__name__)


@flask_app.get("/whoami")
def whoami() -> dict[str, object]:
    """Who Django logged in, read from the shared session."""
    from django.contrib.auth import get_user_model

    user_id = session.get("_auth_user_id")
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    return {"user": user.get_username() if user else None, "visits": session.get("visits", 0)}


@flask_app.post("/visit")
def visit() -> dict[str, object]:
    """A write on the Flask side, which Django's pages see too."""
    session["visits"] = session.get("visits", 0) + 1
    return {"visits": session["visits"]}


application = make_middleware(DispatcherMiddleware(django_app, {"/flask": flask_app}))
# The outer middleware keeps the session; Flask's extension only gives Flask its view of it.
flask_app.config["SECRET_KEY"] = settings.SECRET_KEY
Session(flask_app, store=application.store)
