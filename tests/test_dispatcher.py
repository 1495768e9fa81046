"""One session shared by a Django project and a Flask app under werkzeug's dispatcher.

The example ``django_demo/combined.py``: the WSGI middleware (the ``wsgi.py``
mode) wraps the dispatcher; Django logs in, Flask sees the user.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest
from django.test import override_settings
from django_setup import FAST_HASHING, USER, django_project_files
from test_django import csrf_token, log_in
from werkzeug.test import Client

from wsgi_session.flask import FlaskSessionMiddleware


@pytest.fixture
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    django_project_files(tmp_path_factory)
    combined = importlib.import_module("django_demo.combined")
    assert isinstance(combined.flask_app.wsgi_app, FlaskSessionMiddleware)
    with override_settings(PASSWORD_HASHERS=FAST_HASHING):
        yield Client(combined.application)


def test_a_django_login_is_seen_by_the_flask_app(client: Client) -> None:
    assert client.get("/flask/whoami").json == {"user": None, "visits": 0}

    _, logged_in = log_in(client)

    assert client.get("/flask/whoami").json == {"user": USER, "visits": 0}
    # One cookie, Django's, for both apps: Flask set none of its own.
    assert client.get_cookie(logged_in.name) is not None
    assert client.get_cookie("session") is None


def test_a_flask_write_lands_in_the_session_django_reads(client: Client) -> None:
    log_in(client)
    assert client.post("/flask/visit").json == {"visits": 1}

    home = client.get("/")  # Django's page counts visits in the same session

    assert home.status_code == 200
    assert client.get("/flask/whoami").json == {"user": USER, "visits": 2}


def test_a_django_logout_logs_the_flask_side_out(client: Client) -> None:
    log_in(client)
    home = client.get("/")
    out = client.post("/logout/", data={"csrfmiddlewaretoken": csrf_token(home)})

    assert out.status_code == 302
    assert client.get("/flask/whoami").json["user"] is None
