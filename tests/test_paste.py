"""PasteDeploy: the session filter loaded from real ini files through the installed entry points."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from paste.deploy import loadapp
from werkzeug.test import Client
from wsgi_server import EXAMPLES

from wsgi_session import ConfigurationError, SessionMiddleware
from wsgi_session import paste as session_paste

SECRET = "paste-test-secret-0123456789abcdef0123456789ab"

PIPELINE = """\
[pipeline:main]
pipeline = session counter

[filter:session]
{filter}

[app:counter]
paste.app_factory = wsgi_app:app_factory
"""


@pytest.fixture(autouse=True)
def _environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example application importable; no WSGI_SESSION_* variable but the secret."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("WSGI_SESSION_SECRET_KEY", SECRET)


def load(tmp_path: Path, filter_section: str) -> SessionMiddleware:
    ini = tmp_path / "app.ini"
    ini.write_text(PIPELINE.format(filter=filter_section))
    app = loadapp(f"config:{ini}")
    assert isinstance(app, SessionMiddleware)
    return app


def visits(client: Client) -> str:
    response = client.get("/")
    assert response.status_code == 200
    return response.text.split(" (")[0]


def test_the_example_ini(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WSGI_SESSION_STORE", f"sqlite://{tmp_path}/sessions.db")
    app = loadapp(f"config:{EXAMPLES / 'paste.ini'}")
    client = Client(app)
    assert visits(client) == "You have been here 1 time"
    assert visits(client) == "You have been here 2 times"
    assert (tmp_path / "sessions.db").exists()
    assert isinstance(app, SessionMiddleware) and app.lifetime.idle_timeout == 2 * 3600


def test_section_keys_are_the_settings_and_win_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSGI_SESSION_COOKIE_NAME", "from_env")
    app = load(
        tmp_path,
        f"use = egg:wsgi-session#session\n"
        f"store = sqlite://{tmp_path}/s.db\n"
        f"cookie_name = from_ini\n"
        f"cookie_secure = true\n"
        f"cookie_samesite = Strict\n",
    )
    client = Client(app)
    cookie = client.get("/").headers["Set-Cookie"]
    assert cookie.startswith("from_ini=")
    assert "Secure" in cookie and "SameSite=Strict" in cookie
    assert visits(client) == "You have been here 2 times"


def test_the_secret_comes_from_the_section_when_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WSGI_SESSION_SECRET_KEY")
    section = "use = egg:wsgi-session#main\nstore = memory://\nsecret_key = " + SECRET
    client = Client(load(tmp_path, section))
    assert visits(client) == "You have been here 1 time"
    assert visits(client) == "You have been here 2 times"


def test_a_missing_secret_names_both_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WSGI_SESSION_SECRET_KEY")
    with pytest.raises(ConfigurationError, match="SECRET_KEY or WSGI_SESSION_SECRET_KEY"):
        load(tmp_path, "use = egg:wsgi-session#session")


def test_a_bad_setting_fails_loading_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load(tmp_path, "use = egg:wsgi-session#session\ncookie_secure = maybe\nidle_timeout = 2x")
    message = str(raised.value)
    assert "cookie_secure='maybe'" in message and "idle_timeout='2x'" in message
    assert SECRET not in message


def test_a_mistyped_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cookie_secur: unknown setting"):
        load(tmp_path, "use = egg:wsgi-session#session\ncookie_secur = true")


def test_the_filter_app_factory_protocol(tmp_path: Path) -> None:
    section = (
        "paste.filter_app_factory = wsgi_session.paste:filter_app_factory\n"
        "store = memory://\ncookie_name = app_factory"
    )
    client = Client(load(tmp_path, section))
    assert client.get("/").headers["Set-Cookie"].startswith("app_factory=")
    assert visits(client) == "You have been here 2 times"


@pytest.mark.parametrize(
    ("group", "function"),
    [
        ("paste.filter_factory", session_paste.filter_factory),
        ("paste.filter_app_factory", session_paste.filter_app_factory),
    ],
)
def test_both_entry_points_are_installed(group: str, function: object) -> None:
    found = {
        point.name: point.load()
        for point in entry_points(group=group)
        if point.dist is not None and point.dist.name.lower().replace("_", "-") == "wsgi-session"
    }
    assert found == {"session": function, "main": function}
