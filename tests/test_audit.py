"""The audit log: one line per session created, regenerated, destroyed, revoked; never an id,
a cookie, a store key or session data; off unless asked for."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from helpers import SECRET, set_cookies, store_key
from metrics_app import traffic_app
from werkzeug.test import Client

from wsgi_session import MemoryStore, SessionMiddleware
from wsgi_session.flask import Session as FlaskSession
from wsgi_session.metrics import AUDIT_LOGGER
from wsgi_session.owner import OwnerHasher

AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
ADDRESS = "192.168.7.42"


class Browser:
    def __init__(self, app: Any) -> None:
        self.client = Client(app)
        self.cookies: list[str] = []

    def get(self, path: str) -> None:
        response = self.client.get(
            path, environ_base={"HTTP_USER_AGENT": AGENT, "REMOTE_ADDR": ADDRESS}
        )
        assert response.status_code == 200, response.text
        self.cookies += [cookie.value for cookie in set_cookies(response) if cookie.value]


def audited(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == AUDIT_LOGGER]


def middleware_for(tmp_path: Path, **options: Any) -> SessionMiddleware:
    holder: list[SessionMiddleware] = []
    app = traffic_app(tmp_path, lambda: holder[0].sessions)
    holder.append(SessionMiddleware(app, SECRET, store=MemoryStore(), owner_key="user", **options))
    return holder[0]


def digest(owner: str) -> str:
    from wsgi_session.cookies import KeyRing
    from wsgi_session.owner import HASH_PURPOSE

    return OwnerHasher(KeyRing(SECRET).derive(HASH_PURPOSE)).digest(owner)


def test_every_event_is_logged_with_the_owner_hash_and_client_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    middleware = middleware_for(tmp_path, audit=True, record_client=True)
    browser = Browser(middleware)
    browser.get("/write")  # created, nobody's yet
    browser.get("/login?user=alice")  # regenerated, now alice's
    browser.get("/logout")  # destroyed
    bob = Browser(middleware)
    bob.get("/login?user=bob")
    bob.get("/write")  # an update: not an audit event
    Browser(middleware).get("/login?user=bob")
    Browser(middleware).get("/revoke?user=bob")

    events = [(record.audit["event"], record.audit["owner"]) for record in audited(caplog)]  # type: ignore[attr-defined]
    alice, bob_hash = digest("alice"), digest("bob")
    assert events == [
        ("created", None),
        ("regenerated", alice),
        ("destroyed", alice),
        ("created", bob_hash),
        ("created", bob_hash),
        ("revoked", bob_hash),
    ]
    fields = [record.audit for record in audited(caplog)]  # type: ignore[attr-defined]
    # The client as the per-user index keeps it: the agent, the /24; once known for the owner.
    assert fields[1]["user_agent"] == AGENT and fields[1]["address"] == "192.168.7.0/24"
    assert fields[2]["address"] == "192.168.7.0/24"
    assert fields[5]["count"] == 2
    messages = [record.getMessage() for record in audited(caplog)]
    assert messages[1] == (
        f'session regenerated owner={alice} address=192.168.7.0/24 user_agent="{AGENT}"'
    )

    secrets_seen = set(browser.cookies + bob.cookies)
    secrets_seen |= {cookie.split(".")[0] for cookie in secrets_seen}
    secrets_seen |= {store_key(cookie.split(".")[0]) for cookie in browser.cookies + bob.cookies}
    secrets_seen |= {"alice", "bob", ADDRESS}
    for record in audited(caplog):
        text = record.getMessage() + repr(record.audit)  # type: ignore[attr-defined]
        for secret in secrets_seen:
            assert secret not in text.replace(alice, "").replace(bob_hash, ""), (secret, text)


def test_a_hostile_user_agent_cannot_forge_a_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    middleware = middleware_for(tmp_path, audit=True, record_client=True)
    Client(middleware).get(
        "/login?user=eve",
        environ_base={"HTTP_USER_AGENT": 'x"\nsession revoked owner=admin', "REMOTE_ADDR": ADDRESS},
    )
    (record,) = audited(caplog)
    assert "\n" not in record.getMessage()


def test_the_audit_log_is_off_by_default(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    browser = Browser(middleware_for(tmp_path))
    browser.get("/login?user=alice")
    browser.get("/logout")
    assert audited(caplog) == []


def test_flask_session_audit_setting(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, SESSION_AUDIT=True)

    @app.route("/login")
    def login() -> str:
        from flask import session

        session["_user_id"] = "7"
        session.regenerate()  # type: ignore[attr-defined]
        return "in"

    FlaskSession(app, store=MemoryStore())
    app.test_client().get("/login")
    assert [record.audit["event"] for record in audited(caplog)] == ["created"]  # type: ignore[attr-defined]
    assert audited(caplog)[0].audit["owner"] == digest("7")  # type: ignore[attr-defined]
