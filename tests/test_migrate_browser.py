"""A real browser across the switch: log in on Flask's own sessions, deploy, reload.

Headless Chromium (as tests/test_browser.py drives it) against gunicorn: the old
stack is a Flask-Login application on Flask's cookie sessions; the new one the
same application with wsgi_session and ``migrate_from="flask"``. Cookies are
kept per host, not per port, so the new server on another port is the same site.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis_server import RedisServer
from test_browser import browser  # noqa: F401  (the fixture)
from test_migrate_gunicorn import FLASK_APP, SECRET, gunicorn

LOGIN_BY_LINK = """

@app.get("/login")
def login_by_link():
    login_user(User(request.args["user"]))
    session["cart"] = [1, 2]
    return "logged in"
"""


def cookie(driver: Any) -> str:
    (value,) = [c["value"] for c in driver.get_cookies() if c["name"] == "session"]
    return str(value)


def test_log_in_on_the_old_stack_switch_reload_still_logged_in(
    tmp_path: Path,
    redis_server: RedisServer,
    browser: Callable[[], Any],  # noqa: F811
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "login_app.py").write_text(textwrap.dedent(FLASK_APP) + LOGIN_BY_LINK)
    driver = browser()
    old = gunicorn(tmp_path, "login_app:app", code, APP_SECRET=SECRET)
    try:
        driver.get(old.url + "login?user=alice")
        driver.get(old.url)
        assert "alice has been here [1, 2]" in driver.page_source
        old_cookie = cookie(driver)
    finally:
        old.stop()

    new = gunicorn(
        tmp_path, "login_app:app", code, APP_SECRET=SECRET, MIGRATE="flask", STORE=redis_server.url
    )
    try:
        driver.get(new.url)
        assert "alice has been here [1, 2]" in driver.page_source, driver.page_source
        assert cookie(driver) != old_cookie  # ours now
        driver.refresh()
        assert "alice has been here [1, 2]" in driver.page_source
    finally:
        new.stop()
