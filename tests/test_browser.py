"""The demo (``wsgi-session demo``) driven by a real browser: Debian's headless Chromium.

Selenium is pointed at the system's ``chromium`` and ``chromedriver`` (``make
test`` installs them when missing), so Selenium Manager never downloads
anything. Each browser start uses the same fresh profile directory, so a
restart keeps what a real browser keeps on disk: persistent cookies only.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from memcached_server import HOST
from wsgi_server import BIN, ServerProcess, free_port, server_env

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
COOKIE = "session"
PAGE_WAIT = 30.0  # seconds a page may take to load after a click
_VISITS = re.compile(r"loaded this page <strong>(\d+)</strong> times?")

Browser = Any  # selenium.webdriver.Chrome


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``wsgi-session demo`` on a free loopback port, sessions in a SQLite file."""
    files = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = server_env(
        files,
        WSGI_SESSION_SECRET_KEY="browser-test-secret-0123456789abcdef0123456789",
        WSGI_SESSION_STORE=f"sqlite://{files / 'sessions.db'}",
    )
    command = [str(BIN / "wsgi-session"), "demo", "--host", HOST, "--port", str(port)]
    server = ServerProcess(command, env=env, cwd=files, port=port).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[], Browser]]:
    """``start()`` opens Chromium on this test's profile; a second call is a restart."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for program in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(program) is None:
            # Never a skip: CI must not pass while testing nothing.
            pytest.fail(f"{program} is missing: run `make system-packages`", pytrace=False)
    profile = tmp_path / "profile"
    running: list[Browser] = []

    def start() -> Browser:
        for driver in running:
            driver.quit()  # a clean exit writes the persistent cookies to the profile
        running.clear()
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(
            options=options, service=Service(executable_path=CHROMEDRIVER, log_output=None)
        )
        driver.set_page_load_timeout(30)
        running.append(driver)
        return driver

    yield start
    for driver in running:
        driver.quit()


def visits(driver: Browser, url: str) -> int:
    driver.get(url)
    found = _VISITS.search(driver.page_source)
    assert found is not None, driver.page_source
    return int(found[1])


def session_cookie(driver: Browser) -> dict[str, Any] | None:
    found = [cookie for cookie in driver.get_cookies() if cookie["name"] == COOKIE]
    assert len(found) <= 1, found
    return found[0] if found else None


def wait_for_text(driver: Browser, text: str) -> None:
    """Wait until the page (after a form's redirect) shows ``text``: a click returns at once."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, PAGE_WAIT).until(lambda d: text in d.page_source)
    except Exception as exc:
        raise AssertionError(f"{text!r} not on the page:\n{driver.page_source}") from exc


def log_in(driver: Browser, url: str, name: str, *, remember: bool) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    driver.find_element(By.NAME, "name").send_keys(name)
    if remember:
        driver.find_element(By.NAME, "remember").click()
    driver.find_element(By.CSS_SELECTOR, "form[action=login] button").click()
    wait_for_text(driver, f"Logged in as <strong>{name}</strong>")


def test_the_counter_persists_in_an_httponly_samesite_lax_cookie(
    demo: str, browser: Callable[[], Browser]
) -> None:
    driver = browser()
    assert [visits(driver, demo) for _ in range(3)] == [1, 2, 3]
    cookie = session_cookie(driver)
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert "expiry" not in cookie  # a browser-session cookie until "keep me logged in"
    assert driver.execute_script("return document.cookie") == ""


def test_login_regenerates_the_id_and_logout_ends_the_session(
    demo: str, browser: Callable[[], Browser]
) -> None:
    driver = browser()
    assert visits(driver, demo) == 1
    before = session_cookie(driver)
    assert before is not None
    log_in(driver, demo, "alice", remember=False)
    after = session_cookie(driver)
    assert after is not None
    assert after["value"].split(".")[0] != before["value"].split(".")[0]
    assert visits(driver, demo) >= 2  # the visits carried over into the new id

    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "form[action=logout] button").click()
    wait_for_text(driver, "Logged out")
    assert "Logged in as" not in driver.page_source
    assert visits(driver, demo) == 2  # a new session: the logout page was its first


def test_a_restart_ends_a_browser_session_login_and_keeps_a_remembered_one(
    demo: str, browser: Callable[[], Browser]
) -> None:
    driver = browser()
    log_in(driver, demo, "bob", remember=False)
    driver = browser()  # restart, same profile
    driver.get(demo)
    assert "Logged in as" not in driver.page_source
    assert visits(driver, demo) == 2  # the get above was the first of a new session

    log_in(driver, demo, "carol", remember=True)
    cookie = session_cookie(driver)
    assert cookie is not None and "expiry" in cookie
    driver = browser()
    driver.get(demo)
    assert "Logged in as <strong>carol</strong>" in driver.page_source, driver.page_source
