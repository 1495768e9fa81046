"""The Django examples served by gunicorn, as docs/django.md shows them: the one-setting
engine with a stock wsgi.py, and one session shared with Flask under one dispatcher."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import requests
from test_examples import Serve, serve  # noqa: F401  (the fixture)
from wsgi_server import ROOT, gunicorn_command, server_env

PROJECT = ROOT / "examples" / "django_project"
USER, PASSWORD = "ann", "served-password-0123"


def project_env(tmp_path: Path, settings: str) -> dict[str, str]:
    return server_env(
        tmp_path,
        DJANGO_SETTINGS_MODULE=settings,
        DJANGO_DEMO_DB=str(tmp_path / "users.db"),
        DJANGO_DEMO_SESSIONS=f"sqlite://{tmp_path / 'sessions.db'}",
    )


def manage(tmp_path: Path, settings: str, *args: str, env: dict[str, str] | None = None) -> str:
    """``manage.py args`` with ``settings``; ``env``: more variables (a PYTHONPATH)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env={**project_env(tmp_path, settings), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def prepare(tmp_path: Path, settings: str) -> None:
    manage(tmp_path, settings, "migrate", "--verbosity", "0")
    create = "from django.contrib.auth.models import User; User.objects.create_user("
    manage(tmp_path, settings, "shell", "-c", f"{create}{USER!r}, password={PASSWORD!r})")


def log_in(browser: requests.Session, url: str) -> requests.Response:
    form = browser.get(url + "login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token is not None, form.text
    return browser.post(
        url + "login/",
        data={"username": USER, "password": PASSWORD, "csrfmiddlewaretoken": token[1]},
        timeout=10,
    )


def serve_project(serve: Serve, tmp_path: Path, settings: str, application: str) -> str:  # noqa: F811
    """The project with a user, served by gunicorn: its URL."""
    prepare(tmp_path, settings)
    server = serve(
        lambda port: gunicorn_command(
            "--chdir", str(PROJECT), "--bind", f"127.0.0.1:{port}", application
        ),
        **project_env(tmp_path, settings),
    )
    return server.url


def test_the_engine_with_a_stock_wsgi_py(serve: Serve, tmp_path: Path) -> None:  # noqa: F811
    settings = "django_demo.settings_engine"
    url = serve_project(serve, tmp_path, settings, "django.core.wsgi:get_wsgi_application()")
    browser = requests.Session()

    home = log_in(browser, url)

    assert home.status_code == 200 and f"Hello, {USER}" in home.text
    cookie = browser.cookies["sessionid"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]+", cookie)  # a signed id
    assert cookie.split(".")[0].encode() not in (tmp_path / "sessions.db").read_bytes()
    assert 'id="visits">2<' in browser.get(url, timeout=10).text
    manage(tmp_path, settings, "clearsessions")


def test_django_and_flask_share_a_login_under_one_dispatcher(
    serve: Serve,  # noqa: F811
    tmp_path: Path,
) -> None:
    url = serve_project(serve, tmp_path, "django_demo.settings", "django_demo.combined:application")
    browser = requests.Session()
    assert browser.get(url + "flask/whoami", timeout=10).json()["user"] is None

    assert log_in(browser, url).status_code == 200

    assert browser.get(url + "flask/whoami", timeout=10).json()["user"] == USER
    assert browser.post(url + "flask/visit", timeout=10).json() == {"visits": 2}
